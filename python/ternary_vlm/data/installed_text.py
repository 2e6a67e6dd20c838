"""The default training text of a text-only model (`ternarize --data=installed`): real text that every machine
running the project has installed, none of it an evaluation text (data/eval_texts.py).

  CPython's standard library sources   every third .py file of at least 200 characters, walking Lib/ in sorted
                                       order, without test/, tests/, idlelib/, lib2to3/, pydoc_data/ (the pydoc
                                       topics), site-packages/ and the four modules of the `code` evaluation text;
                                       one document a file (Python code and its docstrings, PSF licence)
  the pydoc topics' train split        data/text.py: the language reference in English, one document a paragraph
                                       (the validation and test paragraphs excluded; PSF licence)
  the locked packages' descriptions    the body of every *.dist-info/METADATA in the interpreter's site-packages
                                       longer than 500 characters, in sorted order (technical English and
                                       markdown; each under its package's own licence)

About 1.3 M SmolLM2 tokens, built in seconds, where sampling 1024 rows from the model itself (teacher_text.py,
`--data=sampled`) takes ~30 minutes on 2 cores. Measured on SmolLM2 (docs/RESULTS.md, stage 8): training on it moved
every held-out text, the out-of-domain GPL too, where the sampled corpus had stopped moving them. The held-out split
is user_data's (5 % of the documents by content hash).
"""

from __future__ import annotations

import glob
import os
import sysconfig

from ternary_vlm.data import eval_texts, text, user_data

_SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "pydoc_data", "site-packages", "__pycache__"}


def _stdlib_sources() -> list[str]:
    lib = sysconfig.get_paths()["stdlib"]
    skipped_modules = {m + ".py" for m in eval_texts.CODE_MODULES}
    out, seen = [], 0
    for root, dirs, files in os.walk(lib):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS)
        for name in sorted(files):
            if not name.endswith(".py") or (root == lib and name in skipped_modules):
                continue
            source = user_data.read_text(os.path.join(root, name))
            if len(source) > 200:
                if seen % 3 == 0:  # a third of the library: code is then ~80 % of the text, not ~95 %
                    out.append(source)
                seen += 1
    return out


def _package_descriptions() -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "*.dist-info", "METADATA"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            parts = f.read().split("\n\n", 1)  # headers, then the long description
        if len(parts) == 2 and len(parts[1]) > 500:
            out.append(parts[1])
    return out


def documents() -> list[str]:
    return _stdlib_sources() + text.split("train") + _package_descriptions()


def dataset() -> user_data.Dataset:
    return user_data.split([user_data.Document(t, "installed text") for t in documents()], "installed text")
