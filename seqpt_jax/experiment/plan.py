"""`--plan`: each arm's model size, tokens, counted FLOPs and expected time, running nothing.

FLOPs are the trainer's own ledger (`train.perf.train_flops`) per phase, as `train.loop` books
them: sub-model stages, frozen steps or distillation steps (+ the teacher's forward passes, its
model read from the teacher arm's composition), then the full model. Evaluation adds `eval_batches`
forward passes every `eval_every` steps (and at the end). Time = FLOPs / THROUGHPUT, the
sustained FLOP/s the scale's gin declares (measure yours with `seqpt bench train`).
Tokens assume full packing (the corpus pipeline packs; padding makes them an upper bound).

Wall time, where the scale declares how its machine behaves (`--scale gpu`): a run's training
takes the longer of its device time (FLOPs / THROUGHPUT) and its feed time (input tokens /
(FEED_TOKENS_PER_S x feed workers): the numpy pipeline builds batches on host cores while the
device trains; only the first arm of a seed with a task, lengths and batch size builds them, later
ones read them from the runner's batch cache, `data.batch_cache`); its evaluations their device
time, plus building the held-out batches in-process (FEED_TOKENS_PER_S, one process) where it is
the seed's first run to evaluate on them (the cache serves the later ones, and a trainer keeps
them: `Trainer.heldout`); plus RUN_OVERHEAD_S (start,
checkpoints); every distinct compiled program (a model shape in one training phase) costs
COMPILE_S once, the persistent compilation cache serving every later run of it; every fine-tuning
run (a task's replicas: `finetune_count`) costs FINETUNE_S plus its FLOPs at THROUGHPUT. The
figures and where they come from are stated in the scale gin and printed with the plan.
"""

from __future__ import annotations

import statistics

import jax

from seqpt_jax.errors import UserError
from seqpt_jax.experiment import spec


def _phase_flops(trainer, enc, dec, head=None, teacher=None) -> list[dict]:
    """Per phase that runs: steps and the ledger's FLOPs, as `train.loop` books them (sampled
    sub-models share their stage's steps: the expected cost is their mean). A phase left no steps
    (the full model of a run frozen to its end) compiles nothing and is left out."""
    import numpy as np
    steps = trainer.config.schedule.steps
    out, start = [], 0
    for end in sorted({p.end for p in trainer.phases}):
        group = [p for p in trainer.phases if p.end == end]
        n = max(0, min(end, steps) - start)
        if n == 0 and out:
            continue
        group = [p for p in group if p.group == group[0].group]  # the first of phases sharing an end runs
        per_step = float(np.mean([trainer.phase_flops(p, enc, dec, head, teacher) for p in group]))
        name = group[0].group if len(group) > 1 else group[0].name
        out.append({"phase": name, "steps": n, "flops_per_step": per_step, "flops": n * per_step,
                    "programs": len(group)})  # sampled sub-models: one compiled program each
        start = max(start, min(end, steps))
    return out


def describe_parsed(teacher: tuple | None = None) -> dict:
    """Figures of the arm whose composition gin holds now (see `spec.parse`), from the trainer's
    own set-up (`loop.setup`). `teacher`: the (config, param shapes) of the model it distils
    from, when it does."""
    from seqpt_jax import models
    from seqpt_jax.train import freezing, loop, perf
    config = spec.train_config()
    trainer = loop.setup(config)
    kind, cfg, shapes = trainer.kind, trainer.cfg, trainer.shapes
    steps, batch = config.schedule.steps, config.schedule.batch_size
    lengths = spec.value("data.mixture_or_task.task_feature_lengths", {"inputs": 128})
    batches = [spec.value("data.mixture_or_task.name", "seqpt_local_mlm"), dict(lengths), batch]  # fed_steps' key
    enc = int(lengths.get("inputs", 128))
    dec = int(lengths.get("targets", 0)) if kind == "encoder_decoder" else 0
    # The corpus feed gives MLM batches their masked positions: the head runs on those only
    # (a seq2seq's encoder MLM head too).
    from seqpt_jax.data import mlm_positions
    head = (mlm_positions.max_predictions(0.15, enc)
            if kind in ("encoder_mlm", "electra") or config.recipe.encoder_mlm_weight else None)
    if config.recipe.distill is not None and teacher is None:
        raise UserError("this arm distils (loop.train.distill) but declares no teacher arm; add "
                        "'teacher': '<arm>' to its ARM macro.")
    phases = _phase_flops(trainer, enc, dec, head, teacher)
    forward = perf.train_flops(kind, cfg, shapes, jax.tree.map(lambda _: False, freezing.all_trainable(shapes)),
                               batch, enc, dec, head)["forward"]
    eval_every, eval_batches = config.evaluation.eval_every, config.evaluation.eval_batches
    evals = (steps // eval_every + (steps % eval_every != 0)) if eval_every else 0
    return {"kind": kind, "params": models.count_params(shapes), "steps": steps, "batch_size": batch,
            "lengths": [enc, dec], "batches": batches, "tokens": steps * batch * (enc + dec), "phases": phases,
            "eval_passes": evals, "eval_batches": eval_batches,
            "train_flops": sum(p["flops"] for p in phases), "eval_flops": evals * eval_batches * forward,
            "eval_pass_flops": eval_batches * forward,
            "layers": [cfg.num_encoder_layers, cfg.num_decoder_layers if kind == "encoder_decoder" else 0],
            "d_model": cfg.d_model, "vocab_size": cfg.vocab_size}


def plan(experiment: str, scale: str, seeds: int, hw: str = "hw/cpu.gin", throughput: float | None = None,
         vocab_size: int | None = None, only: list[str] | None = None, measure: bool = False) -> dict:
    """Every arm's figures and the totals for `seeds` seeds (`only`: those arms and what they
    need, as `--arms` runs them). The model's vocabulary is the scale's VOCAB_SIZE, or
    `vocab_size` (a trained vocabulary's, which can come out smaller). `measure`: time every
    distinct shape's steps and a fine-tune on this machine (experiment/measure.py) and base the
    wall time on those figures."""
    from seqpt_jax import models
    from seqpt_jax.experiment import measure as measure_lib
    rows, shapes_of = [], {}  # arm -> (config, param shapes): a teacher's, for the arms distilling from it
    timings: dict = {}  # measure: shape_key -> measure_lib.time_parsed()
    declared = None
    arms = spec.read_arms(experiment, scale, hw)
    if only:
        selected = set(spec.closure(experiment, arms, only))
        arms = [a for a in arms if a.name in selected]
    for arm in arms:
        bindings = [f"models.preset.vocab_size = {vocab_size or '%VOCAB_SIZE'}"]
        spec.parse(experiment, arm.name, scale, hw, bindings, spec.placeholder_bindings())
        declared = spec.macro("THROUGHPUT", None) if declared is None else declared
        model = spec.train_value("model")
        shapes_of[arm.name] = (model.cfg, models.param_shapes(model))
        row = {"arm": arm.name, "role": arm.role, "op": arm.op,
               **describe_parsed(shapes_of[arm.teacher] if arm.teacher else None)}
        if arm.op == "init":  # the run's init only: no training, one evaluation
            row.update(steps=0, tokens=0, train_flops=0.0, phases=[], eval_flops=row["eval_pass_flops"], eval_passes=1)
        else:  # + the step-0 evaluation of the init (the last step's gives the eval noise, per batch)
            extra = 1 if row["eval_passes"] else 2   # without evaluations the runner evaluates the end itself
            row["eval_flops"] += extra * row["eval_pass_flops"]
            row["eval_passes"] += extra
        if measure and measure_lib.shape_key(row) not in timings:
            timings[measure_lib.shape_key(row)] = measure_lib.time_parsed()
        rows.append(row)
    from seqpt_jax.experiment import downstream as ds
    spec.parse(experiment, rows[0]["arm"], scale, hw, [], spec.placeholder_bindings())
    settings = ds.settings()
    machine = _machine()
    encoders = [r["arm"] for r, a in zip(rows, arms) if a.downstream]
    generation = [r for r, a in zip(rows, arms) if a.generation]
    down = ({"encoders": [*encoders, ds.RANDOM], "tasks": list(ds.TASKS), **settings,
             "pretraining_seeds": seeds, "finetune_seeds": settings["seeds"],
             "encoder_params": models.count_params(shapes_of[encoders[0]][1]["encoder"]),
             "generation": [r["arm"] for r in generation],
             "generation_params": _matmul_params(shapes_of[generation[0]["arm"]][1]) if generation else 0,
             "generation_settings": {"epochs": float(spec.macro("GENERATION_EPOCHS", 3.0)),
                                     "target_length": int(spec.macro("GENERATION_TARGET_LENGTH", 32))}}
            if settings and encoders else None)
    from seqpt_jax.experiment import downstream_curve as dc
    every, curved = dc.every(), [(r, a) for r, a in zip(rows, arms) if a.downstream_curve]
    if down and every and curved:  # one fine-tune per kept checkpoint, per seed, plus a random init
        down["curve"] = {"task": dc.TASK, "every": every, "seeds": seeds,
                         "checkpoints": {r["arm"]: len({*range(every, r["steps"] + 1, every), r["steps"]})
                                         for r, _ in curved}}
    measured = None
    if measure:
        import jax
        measured = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(),
                    "compile_s": [c for t in timings.values() for c in t["compile_s"]],
                    "shapes": [{"arms": [r["arm"] for r in rows if measure_lib.shape_key(r) == k], **t}
                               for k, t in timings.items()]}
        if down:  # one run: every encoder x fine-tuning seed of a pre-training seed, as the runner trains them
            measured["finetune_s"] = measure_lib.time_finetune(shapes_of[encoders[0]][0], settings,
                                                               replicas=len(down["encoders"]) * settings["seeds"])
        for r in rows:
            t = timings[measure_lib.shape_key(r)]
            r["measured_s"] = (r["train_flops"] / t["flops_per_step"] * t["step_s"]
                               + r["eval_passes"] * r["eval_batches"] * t["eval_step_s"])
    rate = throughput or declared
    total = sum(r["train_flops"] + r["eval_flops"] for r in rows) * seeds
    for r in rows:
        r["seconds_per_seed"] = r["measured_s"] if measured else (r["train_flops"] + r["eval_flops"]) / rate if rate \
            else None
        r["tokens_per_param"] = r["tokens"] / r["params"]
    total_seconds = sum(r["seconds_per_seed"] for r in rows) * seeds if measured else total / rate if rate else None
    return {"experiment": experiment, "scale": scale, "seeds": seeds, "throughput": rate, "arms": rows,
            "downstream": down, "wall": _wall(rows, down, seeds, rate, machine, measured), "measured": measured,
            "total_flops": total, "total_seconds": total_seconds}


def _machine() -> dict | None:
    """The parsed scale's wall-time model (module docstring), or None where it declares none."""
    feed = spec.macro("FEED_TOKENS_PER_S", None)
    if feed is None:
        return None
    return {"feed_tokens_per_s": float(feed),  # MLM batches; FEED_S2S_TOKENS_PER_S: span corruption's
            "feed_s2s_tokens_per_s": float(spec.macro("FEED_S2S_TOKENS_PER_S", feed)),
            "feed_workers": int(spec.value("data.mixture_or_task.feed_workers", 0)),
            "compile_s": float(spec.macro("COMPILE_S")), "run_overhead_s": float(spec.macro("RUN_OVERHEAD_S")),
            "finetune_s": float(spec.macro("FINETUNE_S")), "machine": spec.macro("MACHINE", "")}


def finetune_count(down: dict | None) -> int:
    """Fine-tuning runs an experiment makes, as `runner._together` groups them: per pre-training
    seed, one per task for every encoder and its random init (each encoder x fine-tuning seed a
    replica of one program: the extracted encoders have the MLM encoder's shape), one for the
    downstream curve's checkpoints, and one for the generation rows (each seq2seq arm and its
    random init) where `generation.pretraining_seeds` takes that seed."""
    if not down:
        return 0
    from seqpt_jax.experiment import generation
    n = len(down["tasks"]) * down["pretraining_seeds"]
    n += down["curve"]["seeds"] if down.get("curve") else 0
    gen_seeds = generation.pretraining_seeds(down["pretraining_seeds"], {"seeds": down["finetune_seeds"]})
    return n + len(gen_seeds) if down["generation"] else n


def _matmul_params(shapes: dict) -> int:
    """Parameters a token's forward pass multiplies by: all but the token embedding (a gather)."""
    from seqpt_jax import models
    return models.count_params(shapes) - models.count_params(shapes.get("token_embedder", {}))


def finetune_flops(down: dict | None) -> float:
    """Every fine-tune's counted FLOPs (6 x params per trained token, 2 x params per scored
    one, params being the encoder's layers for a classifier or tagger, a seq2seq's all but its
    embedding table): its epochs over the training examples, a validation pass per epoch and the
    tests, each task at its size (ja_ner: measure.JA_NER_TRAIN sentences, Japanese only; the corpus
    tasks' zero-shot tests in measure.TEST_LANGS languages, at most)."""
    if not down:
        return 0.0
    from seqpt_jax.experiment import generation
    from seqpt_jax.experiment.measure import JA_NER_TRAIN, TEST_LANGS
    n, length, test = down["encoder_params"], down["length"], down["test"]
    sizes = {"section": (down["train"], down["epochs"], TEST_LANGS),
             "ui_tagging": (down["train"], down["epochs"], TEST_LANGS),
             "ja_ner": (min(down["train"], JA_NER_TRAIN), down["ner_epochs"], 1)}

    def one(params, train, epochs, langs, tokens_per_example):  # train, validate each epoch, test
        return params * tokens_per_example * (6 * train * epochs + 2 * test * (max(1, round(epochs)) + langs))
    per_encoder = sum(one(n, *sizes[t], length) for t in down["tasks"] if t in sizes)
    total = per_encoder * len(down["encoders"]) * down["finetune_seeds"] * down["pretraining_seeds"]
    c = down.get("curve")
    if c:
        total += one(n, *sizes["ja_ner"], length) * (sum(c["checkpoints"].values()) + 1) * c["seeds"]
    if down["generation"]:
        g = down["generation_settings"]
        gen_seeds = generation.pretraining_seeds(down["pretraining_seeds"], {"seeds": down["finetune_seeds"]})
        total += (one(down["generation_params"], down["train"], g["epochs"], 1, length + g["target_length"])
                  * (len(down["generation"]) + 1) * len(gen_seeds))
    return float(total)


def fed_steps(rows: list[dict]) -> list[int]:
    """The training steps whose batches each row's feed builds, per seed: the runner's batch cache
    (`data.batch_cache`) serves a row the batches an earlier row of its seed built (same task,
    lengths and batch size: `batches`)."""
    built: dict = {}  # key -> batches built so far
    out = []
    for r in rows:
        key = repr(r["batches"])
        out.append(max(0, r["steps"] - built.get(key, 0)))
        built[key] = max(built.get(key, 0), r["steps"])
    return out


def _wall(rows: list[dict], down: dict | None, seeds: int, rate: float | None, machine: dict | None,
          measured: dict | None = None) -> dict | None:
    """The module docstring's wall-time model; with `measured` (experiment/measure.py), each run's
    device time, the compile seconds and the fine-tune seconds are this machine's, and a scale
    that declares no machine gets the parts it can measure (no feed or per-run overhead)."""
    if measured:
        machine = {"feed_tokens_per_s": None, "feed_workers": 0, "run_overhead_s": 0.0, **(machine or {}),
                   "compile_s": statistics.mean(measured["compile_s"]), "machine": f"this {measured['device']}"}
        machine["finetune_s"] = measured.get("finetune_s", machine.get("finetune_s", 0.0))
    if not machine or not (rate or measured):
        return None
    feed = machine["feed_tokens_per_s"]  # input tokens per second and feed process (None: not modelled)
    workers = max(machine["feed_workers"], 1)
    runs = [r for r in rows if r["op"] == "train"]

    def single(r):  # one process's rate on the row's batches: a seq2seq arm's are span corruption's
        return machine.get("feed_s2s_tokens_per_s") or feed if r["kind"] == "encoder_decoder" else feed

    def device(r, part):  # seconds of a run's training or evaluation on the device
        if measured:
            share = r["train_flops"] / (r["train_flops"] + r["eval_flops"]) if r["train_flops"] else 0.0
            return r["measured_s"] * (share if part == "train" else 1 - share)
        return r[f"{part}_flops"] / rate

    def inputs(r, steps):
        return steps * r["batch_size"] * r["lengths"][0]

    # training batches come from the feed workers; held-out batches are built in-process by the
    # first row of a seed that evaluates on them, and the batch cache serves every later trainer
    total_device = sum(device(r, "train") + device(r, "eval") for r in rows) * seeds
    keys = [repr(r["batches"]) for r in rows]
    builds_heldout = [k not in keys[:i] for i, k in enumerate(keys)]
    busy = total_device if feed is None else sum(
        max(device(r, "train"), inputs(r, fed) / (single(r) * workers))
        + device(r, "eval") + (inputs(r, r["eval_batches"]) / single(r) if first else 0.0)
        for r, fed, first in zip(rows, fed_steps(rows), builds_heldout)) * seeds
    programs = {(r["kind"], tuple(r["layers"]), r["d_model"], ph["phase"], k)
                for r in runs for ph in r["phases"] for k in range(ph["programs"])}
    programs |= {(r["kind"], tuple(r["layers"]), r["d_model"], "eval") for r in rows}
    finetunes = finetune_count(down)
    # A declared machine: FINETUNE_S per run (start, data, compile, latency) + its FLOPs at THROUGHPUT;
    # measured: the seconds of one run of all its replicas.
    finetune = finetunes * machine["finetune_s"] + (finetune_flops(down) / rate if rate and not measured else 0.0)
    parts = {"training": busy, "compile": len(programs) * machine["compile_s"],
             "overhead": len(rows) * seeds * machine["run_overhead_s"], "finetune": finetune}
    return {**machine, "device_s": total_device, "feed_bound": busy > total_device * 1.01, "programs": len(programs),
            "finetunes": finetunes, "parts": parts, "seconds": sum(parts.values()), "measured": bool(measured)}


def _si(x: float) -> str:
    for unit, f in (("Z", 1e21), ("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= f:
            return f"{x / f:.3g}{unit}"
    return f"{x:.3g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, f in (("days", 86400), ("h", 3600)):
        if seconds >= 2 * f:
            return f"{seconds / f:.1f} {unit}"
    return f"{seconds / 60:.1f} min"


def text(p: dict) -> str:
    head = (f"experiment {p['experiment']} at --scale {p['scale']}, {p['seeds']} seed(s); time at "
            + (f"{_si(p['throughput'])}FLOP/s (THROUGHPUT in the scale gin or --throughput)" if p["throughput"]
               else "no declared throughput"))
    lines = [head, "",
             f"{'arm':<18} {'role':<8} {'kind':<16} {'layers':>7} {'d_model':>7} {'params':>8} {'steps':>7} "
             f"{'tokens':>8} {'train FLOPs':>11} {'eval FLOPs':>10} {'time/seed':>10}"]
    for r in p["arms"]:
        t = _duration(r["seconds_per_seed"])
        lines.append(f"{r['arm']:<18} {r['role']:<8} {r['kind']:<16} {'+'.join(map(str, r['layers'])):>7} "
                     f"{r['d_model']:>7} {_si(r['params']):>8} {r['steps']:>7} {_si(r['tokens']):>8} "
                     f"{_si(r['train_flops']):>11} {_si(r['eval_flops']):>10} {t:>10}")
        if len(r["phases"]) > 1:
            lines.append(" " * 20 + "phases: " + ", ".join(
                f"{ph['phase']} {ph['steps']} x {_si(ph['flops_per_step'])}" for ph in r["phases"]))
    total = _duration(p["total_seconds"])
    lines += ["", f"total for {p['seeds']} seed(s): {_si(p['total_flops'])}FLOP (training + evaluation) = {total} "
              "at the throughput above (compile, checkpoint and data time not included)"]
    trained = [r for r in p["arms"] if r["op"] == "train"]
    if trained:
        least = min(trained, key=lambda r: r["tokens_per_param"])
        lines.append("tokens per parameter: " + ", ".join(f"{r['arm']} {r['tokens_per_param']:.1f}" for r in trained)
                     + f" (least: {least['arm']})")
    m = p.get("measured")
    if m:
        lines.append(f"measured on this {m['device']} ({m['backend']}), synthetic batches of each shape:")
        for t in m["shapes"]:
            lines.append(f"  {', '.join(t['arms'])}: train step {1e3 * t['step_s']:.1f} ms "
                         f"({_si(t['flops_per_step'] / t['step_s'])}FLOP/s), eval step {1e3 * t['eval_step_s']:.1f} ms, "
                         f"compile {' + '.join(f'{c:.1f}' for c in t['compile_s'])} s")
        if "finetune_s" in m:
            lines.append(f"  one fine-tune (the tasks' mean, compiled once): {m['finetune_s']:.2f} s")
    w = p.get("wall")
    if w:
        parts = w["parts"]
        s2s = w.get("feed_s2s_tokens_per_s")
        feed = ("feed not modelled" if not w["feed_tokens_per_s"] else
                f"feed {_si(w['feed_tokens_per_s'])}" + (f" (span corruption {_si(s2s)})" if s2s and s2s !=
                                                          w["feed_tokens_per_s"] else "")
                + f" tokens/s x {max(w['feed_workers'], 1)} workers")
        lines += [f"expected wall time on {w['machine'] or 'the declared machine'}: {_duration(w['seconds'])} = "
                  f"training {_duration(parts['training'])} ({'feed' if w['feed_bound'] else 'device'}-bound: device "
                  f"{_duration(w['device_s'])}, {feed}) + compile {_duration(parts['compile'])} ({w['programs']} "
                  f"programs x {w['compile_s']:.3g} s) + runs {_duration(parts['overhead'])}"
                  + (f" + fine-tunes {_duration(parts['finetune'])} ({w['finetunes']} runs x {w['finetune_s']:.3g} s"
                     + ("" if w["measured"] else " + their FLOPs") + ")" if w["finetunes"] else "")]
    d = p.get("downstream")
    if d:
        runs = len(d["tasks"]) * d["pretraining_seeds"]
        n = len(d["encoders"]) * runs * d["finetune_seeds"]
        where = "in the wall time, not the FLOP total" if w else "not in the total"
        lines.append(f"downstream ({where}): {len(d['encoders'])} encoders ({', '.join(d['encoders'])}) x "
                     f"{len(d['tasks'])} tasks x {d['pretraining_seeds']} pre-training seed(s) x {d['finetune_seeds']} "
                     f"fine-tuning seed(s) = {n} fine-tunes in {runs} runs (a task's encoders and fine-tuning "
                     f"seeds train together), {d['train']} English training examples, "
                     f"{d['epochs']:g} epoch(s), length {d['length']}; {_si(finetune_flops(d))}FLOP")
        c = d.get("curve")
        if c:
            kept = ", ".join(f"{arm} {n}" for arm, n in c["checkpoints"].items())
            lines.append(f"downstream curve ({where}): {c['task']} fine-tunes of every kept checkpoint "
                         f"(every {c['every']} steps: {kept}) and a random init, x {c['seeds']} seed(s) = "
                         f"{(sum(c['checkpoints'].values()) + 1) * c['seeds']} fine-tunes")
    return "\n".join(lines) + "\n"
