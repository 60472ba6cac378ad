"""What a run says while it trains: TensorBoard events always, a progress bar in a terminal,
plain lines otherwise. Only process 0 writes."""

from __future__ import annotations

import os
import sys

import jax

from seqpt_jax.train import events


def _fmt(values: dict) -> str:
    parts = []
    for k, v in values.items():
        if k == "learning_rate":
            parts.append(f"lr={v:.2e}")
        elif k == "tokens_per_s":
            parts.append(f"tok/s={v:,.0f}")
        elif k == "mfu":
            parts.append(f"mfu={100 * v:.1f}%")
        elif k in ("loss", "eval_loss", "grad_norm", "accuracy", "eval_accuracy"):
            parts.append(f"{k}={v:.4f}")
    return " ".join(parts)


class RunLog:
    """`log(step, values)` to TensorBoard (train/ and eval/ tags) and the terminal."""

    def __init__(self, model_dir: str, total_steps: int, start_step: int, progress: bool | None = None):
        self.enabled = jax.process_index() == 0
        if not self.enabled:
            return
        self.events = events.EventFile(os.path.join(model_dir, "tb"))
        tty = sys.stderr.isatty() if progress is None else progress
        self.bar = None
        if tty:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, unit="step")

    def log(self, step: int, values: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        self.events.scalars(step, {f"{prefix}/{k}": v for k, v in values.items()})
        text = _fmt(values)
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=False)
        else:
            print(f"[{prefix}] step {step}: {text}", flush=True)

    def advance(self, n: int = 1) -> None:
        if self.enabled and self.bar is not None:
            self.bar.update(n)

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.enabled:
            if self.bar is not None:
                self.bar.close()
            self.events.close()
