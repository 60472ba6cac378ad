"""A small multilingual corpus in the layout `seqpt corpus build` writes, for data tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

SENTENCES = {
    "en": ["The package manager installs programs and their dependencies.",
           "Open the file menu and choose Save As to keep a copy.",
           "This tool converts images between many common formats.",
           "The library provides functions for reading compressed archives.",
           "Press the Enter key to confirm your choice.",
           "A small utility that shows the current weather in the terminal."],
    "de": ["Der Paketmanager installiert Programme und ihre Abhängigkeiten.",
           "Öffnen Sie das Menü Datei und wählen Sie Speichern unter.",
           "Dieses Werkzeug wandelt Bilder zwischen vielen Formaten um.",
           "Die Bibliothek stellt Funktionen zum Lesen von Archiven bereit.",
           "Drücken Sie die Eingabetaste, um Ihre Auswahl zu bestätigen."],
    "ru": ["Менеджер пакетов устанавливает программы и их зависимости.",
           "Откройте меню Файл и выберите Сохранить как.",
           "Эта утилита преобразует изображения между форматами.",
           "Библиотека предоставляет функции для чтения сжатых архивов.",
           "Нажмите клавишу Ввод, чтобы подтвердить выбор."],
    "el": ["Ο διαχειριστής πακέτων εγκαθιστά προγράμματα και εξαρτήσεις.",
           "Ανοίξτε το μενού Αρχείο και επιλέξτε Αποθήκευση ως.",
           "Αυτό το εργαλείο μετατρέπει εικόνες σε πολλές μορφές.",
           "Πατήστε το πλήκτρο Enter για να επιβεβαιώσετε την επιλογή σας."],
    "zh": ["软件包管理器安装程序及其依赖关系。",
           "打开文件菜单并选择另存为以保存副本。",
           "此工具可以在多种常见格式之间转换图像。",
           "按回车键确认您的选择。"],
    "ja": ["パッケージマネージャーはプログラムと依存関係をインストールします。",
           "ファイルメニューを開いて名前を付けて保存を選びます。",
           "このツールは画像をさまざまな形式に変換します。",
           "選択を確定するにはエンターキーを押してください。"],
    "ko": ["패키지 관리자는 프로그램과 의존성을 설치합니다.",
           "파일 메뉴를 열고 다른 이름으로 저장을 선택하십시오.",
           "이 도구는 이미지를 여러 형식으로 변환합니다."],
    "hi": ["पैकेज प्रबंधक प्रोग्राम और उनकी निर्भरताएँ स्थापित करता है।",
           "फ़ाइल मेनू खोलें और इस रूप में सहेजें चुनें।",
           "यह उपकरण छवियों को कई प्रारूपों में बदलता है।"],
}
DOCS_PER_SPLIT = {"train": 60, "validation": 8, "test": 8}


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def make_corpus(root: Path, langs=None, docs=None) -> Path:
    """Writes text/, tasks/ and stats.json under root; returns root."""
    rng = random.Random(0)
    langs = list(langs or SENTENCES)
    docs = docs or DOCS_PER_SPLIT
    stats = {}
    for lang in langs:
        for split, n in docs.items():
            rows = []
            for i in range(n):
                k = rng.randint(2, 5)
                text = " ".join(rng.choice(SENTENCES[lang]) for _ in range(k))
                if i % 3 == 0:
                    text += f"\n{rng.choice(SENTENCES[lang])} {i * 7}."
                rows.append({"text": text, "source": "fixture", "id": f"{lang}-{split}-{i}"})
            write_jsonl(root / "text" / f"{lang}.{split}.jsonl", rows)
            stats.setdefault(lang, {})[split] = {"documents": n,
                                                 "characters": sum(len(r["text"]) for r in rows)}
    sections = ["utils", "graphics", "libs"]
    for lang in ("en", "de"):
        for split in ("train", "validation", "test"):
            write_jsonl(root / "tasks" / "section" / f"{lang}.{split}.jsonl",
                        [{"text": s, "label": sections[i % 3], "id": f"s{i}"}
                         for i, s in enumerate(SENTENCES[lang])])
            write_jsonl(root / "tasks" / "synopsis" / f"{lang}.{split}.jsonl",
                        [{"source": s + " " + s, "target": s.split()[0], "id": f"y{i}"}
                         for i, s in enumerate(SENTENCES[lang])])
    for lang in ("de", "ru"):
        for split in ("train", "validation", "test"):
            write_jsonl(root / "tasks" / "translation" / f"en-{lang}.{split}.jsonl",
                        [{"source": e, "target": t, "id": f"t{i}"}
                         for i, (e, t) in enumerate(zip(SENTENCES["en"], SENTENCES[lang]))])
            conll = root / "tasks" / "ui_tagging" / f"{lang}.{split}.conll"
            conll.parent.mkdir(parents=True, exist_ok=True)
            conll.write_text("# id = u1\nÖffnen\tO\nSie\tO\ndas\tO\nMenü\tB-UI\nDatei\tI-UI\n.\tO\n\n"
                             "Drücken\tO\nSie\tO\nEnter\tB-UI\n\n", "utf-8")
    (root / "stats.json").write_text(json.dumps(stats), "utf-8")
    return root
