"""What the demo trains, and for how long: model sizes and step budgets scaled by --minutes.

The default (15 minutes) is sized for an idle 2-core CPU machine including a fresh corpus
download; budgets scale linearly with `minutes` (never below a few steps, so `--minutes 0.1`
is a smoke run). Every run uses the same batch and sequence length, so step counts compare.
"""

from __future__ import annotations

import dataclasses

# en is fine-tuned on; the other six are zero-shot, in five scripts (Latin, Cyrillic, kana,
# Han, Hangul). Each has DDTP translations (sections) and LibreOffice help (UI tagging).
DEMO_LANGS = ("en", "de", "fr", "ru", "ja", "zh", "ko")
DEFAULT_MINUTES = 15.0


@dataclasses.dataclass(frozen=True)
class Plan:
    langs: tuple = DEMO_LANGS
    # The corpus slice the demo trains on (per language), and the downstream subsets.
    train_mb: float = 1.0
    validation_mb: float = 0.1
    section_labels: int = 8           # the most frequent English package sections
    section_train: int = 2000
    tagging_train: int = 1500
    test_per_lang: int = 300
    vocab_size: int = 8000
    vocab_chars: int = 2_000_000
    # Models: bert family; the small one grows into the large one (bert2BERT).
    small: dict = dataclasses.field(default_factory=lambda: dict(
        num_encoder_layers=2, num_decoder_layers=2, d_model=128, num_heads=2, head_dim=64, d_ff=512))
    large: dict = dataclasses.field(default_factory=lambda: dict(
        num_encoder_layers=4, num_decoder_layers=4, d_model=256, num_heads=4, head_dim=64, d_ff=1024))
    length: int = 128                 # encoder tokens (and span-corruption inputs)
    batch_size: int = 16
    learning_rate: float = 1e-3
    # Step budgets.
    # About 10.5 TFLOP in all (7.6 / 46 / 11 GFLOP per step for small / large / seq2seq, the MLM
    # head on the masked positions only; 18.6 / 68 / 11 when it scored every position).
    mlm_steps: int = 200
    grow_stage_steps: int = 30        # bert2BERT sub-model stage (bottom layers, top trained)
    grow_steps: int = 100             # including the stage above
    warm_frozen_steps: int = 60       # warm-started seq2seq with the encoder frozen
    warm_steps: int = 200             # including the frozen steps
    scratch_steps: int = 200          # seq2seq from scratch (same size and budget as warm)
    eval_every: int = 25
    eval_batches: int = 4
    finetune_epochs: float = 1.0      # 2 epochs cost the grown model's fine-tuning 262 CPU-s here
    finetune_length: int = 64

    def scaled(self, minutes: float) -> "Plan":
        """This plan with every budget scaled by minutes / DEFAULT_MINUTES."""
        f = minutes / DEFAULT_MINUTES

        def steps(n: int, low: int = 4) -> int:
            return max(low, round(n * f))

        mlm, grow, warm = steps(self.mlm_steps), steps(self.grow_steps, 6), steps(self.warm_steps, 6)
        return dataclasses.replace(
            self, mlm_steps=mlm, grow_steps=grow, grow_stage_steps=max(1, min(steps(self.grow_stage_steps, 2), grow // 3)),
            warm_steps=warm, warm_frozen_steps=max(1, min(steps(self.warm_frozen_steps, 2), warm // 3)),
            scratch_steps=warm if self.scratch_steps == self.warm_steps else steps(self.scratch_steps),
            eval_every=max(2, min(steps(self.eval_every, 2), mlm // 2)),
            eval_batches=max(1, min(self.eval_batches, round(self.eval_batches * f) or 1)),
            section_train=steps(self.section_train, 48), tagging_train=steps(self.tagging_train, 48),
            test_per_lang=steps(self.test_per_lang, 32),
            train_mb=max(0.05, self.train_mb * min(f, 1.0)), vocab_chars=steps(self.vocab_chars, 200_000))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
