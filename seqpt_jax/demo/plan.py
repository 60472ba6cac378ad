"""The demo's languages and the sizes of its data slice (`recipe.make_slice`): the corpus a
fresh machine builds for it, and the downstream subsets the experiments fine-tune on
(`experiment.downstream` sets the fine-tuning budget from the scale gin)."""

from __future__ import annotations

import dataclasses

# en is fine-tuned on; the other six are zero-shot, in five scripts (Latin, Cyrillic, kana,
# Han, Hangul). Each has DDTP translations (sections) and LibreOffice help (UI tagging).
DEMO_LANGS = ("en", "de", "fr", "ru", "ja", "zh", "ko")


@dataclasses.dataclass(frozen=True)
class Plan:
    langs: tuple = DEMO_LANGS
    # The corpus slice (per language), and the downstream subsets.
    train_mb: float = 1.0
    validation_mb: float = 0.1
    section_labels: int = 8           # the most frequent English package sections
    section_train: int = 2000
    tagging_train: int = 1500
    test_per_lang: int = 300
    finetune_epochs: float = 1.0
    finetune_length: int = 64
