"""Grown models on real text: a tiny source is trained for a few dozen steps on multilingual
sentences (byte-level ids), then grown by every method and scored against a random init of
the same size. Also measures the loss gap of FPI with a random unit map (the norms' share).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seqpt_jax import mappings, models

TEXT = """The weather was cold, so we stayed inside and read books all afternoon.
A small package provides tools for converting images between common formats.
Der Zug nach Berlin fährt um acht Uhr vom dritten Gleis ab.
Dieses Paket enthält die Dokumentation für die Programmbibliothek.
Le chat dort sur le canapé pendant que la pluie tombe dehors.
Ce paquet fournit une interface graphique pour gérer les imprimantes.
El mercado abre temprano y cierra cuando se acaba el pescado fresco.
Este paquete contiene los archivos de traducción al español.
Il treno per Roma è in ritardo di venti minuti a causa della neve.
Questo pacchetto fornisce le librerie condivise necessarie al programma.
Погода сегодня тёплая, и дети играют во дворе до самого вечера.
Этот пакет содержит утилиты для работы с файловой системой.
Ο καιρός σήμερα είναι ζεστός και η θάλασσα είναι ήρεμη.
Αυτό το πακέτο παρέχει εργαλεία για τη διαχείριση του δικτύου.
今天天气很好，我们去公园散步吧。
这个软件包提供了处理图像的命令行工具。
今日はとても良い天気なので、公園を散歩しました。
このパッケージには日本語の翻訳ファイルが含まれています。
오늘은 날씨가 좋아서 공원에서 산책을 했습니다.
이 패키지는 네트워크 관리를 위한 도구를 제공합니다.
आज मौसम बहुत अच्छा है और बच्चे बाहर खेल रहे हैं।
यह पैकेज फ़ाइल सिस्टम के साथ काम करने के लिए उपकरण देता है।
""".splitlines()

PAD, MASK, EOS, OFFSET = 0, 1, 2, 4
VOCAB, LENGTH = 256 + OFFSET, 48


def _rows() -> np.ndarray:
    """Byte ids (+OFFSET) of each sentence, cut or padded to LENGTH."""
    rows = np.zeros((len(TEXT), LENGTH), np.int32)
    for i, line in enumerate(TEXT):
        ids = np.frombuffer(line.encode("utf-8"), np.uint8)[:LENGTH - 1].astype(np.int32) + OFFSET
        rows[i, :len(ids)] = ids
        rows[i, len(ids)] = EOS
    return rows


def _mlm_batch(rows, rng):
    """Inputs with 15% of the real tokens masked; (inputs, targets, weights on the masked)."""
    masked = (rng.random(rows.shape) < 0.15) & (rows != PAD)
    return np.where(masked, MASK, rows), rows, masked.astype(np.float32)


def _features(kind, inputs, targets):
    batch = {"encoder_input_tokens": inputs}
    if kind == "encoder_decoder":  # denoising: the decoder rebuilds the original text
        batch["decoder_input_tokens"] = jnp.pad(targets[:, :-1], ((0, 0), (1, 0)))
    return batch


def _loss(model, kind, params, inputs, targets, weights):
    logits = model.apply({"params": params}, _features(kind, inputs, targets))
    if kind == "encoder_decoder":
        weights = (targets != PAD).astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return (ce * weights).sum() / weights.sum()


@functools.lru_cache(maxsize=None)
def _loss_fn(kind, cfg):
    return jax.jit(functools.partial(_loss, models.build(kind, cfg), kind))


def _train(kind, cfg, steps=40, lr=3e-3):
    model = models.build(kind, cfg)
    rows = _rows()
    params = models.init(model, jax.random.key(0), _features(kind, rows[:2], rows[:2]))
    opt = optax.adam(lr)
    state = opt.init(params)

    @jax.jit
    def step(params, state, inputs, targets, weights):
        loss, grads = jax.value_and_grad(functools.partial(_loss, model, kind))(params, inputs, targets, weights)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    rng = np.random.default_rng(0)
    for _ in range(steps):
        params, state, loss = step(params, state, *_mlm_batch(rows, rng))
    return params, float(loss)


@pytest.mark.parametrize("family,kind", [("bert", "encoder_mlm"), ("t5", "encoder_decoder")])
def test_every_method_starts_far_below_random_init_on_real_text(family, kind):
    src = models.preset(f"{family}-tiny", vocab_size=VOCAB, d_model=32, num_heads=2, head_dim=16,
                        d_ff=64, num_encoder_layers=2, num_decoder_layers=2, max_length=LENGTH,
                        dropout_rate=0.0)
    wide = src.replace(d_model=64, num_heads=4, d_ff=128, num_encoder_layers=4, num_decoder_layers=4)
    deep = src.replace(num_encoder_layers=4, num_decoder_layers=4)
    params, train_loss = _train(kind, src)
    batch = _mlm_batch(_rows(), np.random.default_rng(123))  # held-out masking
    source = float(_loss_fn(kind, src)(params, *batch))
    key = jax.random.key(1)
    scores = {}
    for method, unit_map, dst in [("fpi", "tile", wide), ("fpi", "random", wide), ("aki", "random", wide),
                                  ("direct_copy", "random", wide), ("stack", "random", deep),
                                  ("interpolate", "random", deep), ("random", "random", wide)]:
        grown = mappings.grow(params, src, dst, method=method, rng=key, unit_map=unit_map)
        scores[f"{method}/{unit_map}"] = float(_loss_fn(kind, dst)(grown, *batch))
    width_only = mappings.grow(params, src, wide.replace(num_encoder_layers=2, num_decoder_layers=2),
                               method="fpi", rng=key, unit_map="random")
    gap = float(_loss_fn(kind, wide.replace(num_encoder_layers=2, num_decoder_layers=2))(width_only, *batch)) - source
    print(f"\n{family} {kind}: trained source loss {source:.4f} (last train step {train_loss:.3f})")
    for name, value in scores.items():
        print(f"  {name:<20} {value:.4f}")
    print(f"  FPI random-map width-only gap (norms only): {gap:+.4f} nats")
    rand = scores.pop("random/random")
    assert rand > source + 1.5, "the source did not learn; the comparison would be empty"
    for name, value in scores.items():
        assert value < rand - 1.0, f"{name} starts at {value:.3f}, not far below random init {rand:.3f}"
    assert abs(gap) < 0.25
