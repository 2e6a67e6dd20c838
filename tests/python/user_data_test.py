"""The --data readers: every accepted format, the held-out split, and a one-line error for each kind of bad
input (naming the file and line)."""

import json
import os
import tempfile

import datasets
import numpy as np
from absl.testing import absltest
from PIL import Image

from ternary_vlm.data import eval_texts, installed_text, text, user_data

PARAGRAPHS = [f"Paragraph {i} says something about topic {i * 7 % 13}." for i in range(60)]


class UserDataTest(absltest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def write(self, name, content, mode="w"):
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, mode) as f:
            f.write(content)
        return path

    def assertSplit(self, ds, expected_texts):
        train = [d.text for d in ds.train]
        heldout = [d.text for d in ds.heldout]
        self.assertCountEqual(train + heldout, expected_texts)
        self.assertEmpty(set(train) & set(heldout))
        self.assertNotEmpty(heldout)
        self.assertLess(len(heldout), len(train))

    def test_text_file_paragraphs_and_lines(self):
        path = self.write("a.txt", "\n\n".join(PARAGRAPHS) + "\n")
        ds = user_data.read(path)
        self.assertSplit(ds, PARAGRAPHS)
        first = next(d for d in ds.train + ds.heldout if d.text == PARAGRAPHS[3])
        self.assertEqual(first.source, f"{path}:7")

    def test_folder_of_txt_and_md_recursively(self):
        self.write("x/one.md", "\n\n".join(PARAGRAPHS[:30]))
        self.write("x/sub/two.txt", "\n\n".join(PARAGRAPHS[30:]))
        self.write("x/ignored.py", "print('not data')")
        self.assertSplit(user_data.read(os.path.join(self.dir, "x")), PARAGRAPHS)

    def test_split_is_by_content_not_order(self):
        a = user_data.read(self.write("a.txt", "\n\n".join(PARAGRAPHS)))
        b = user_data.read(self.write("b.txt", "\n\n".join(reversed(PARAGRAPHS))))
        self.assertCountEqual([d.text for d in a.heldout], [d.text for d in b.heldout])

    def test_image_split_does_not_depend_on_where_the_data_folder_is(self):
        """The same image examples in two folders: the same held-out examples (images hashed by their bytes)."""
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 255, size=(8, 8, 3), dtype=np.uint8) for _ in range(60)]
        heldout = []
        for folder in ("one", os.path.join("elsewhere", "two")):
            for i, image in enumerate(images):
                os.makedirs(os.path.join(self.dir, folder), exist_ok=True)
                Image.fromarray(image).save(os.path.join(self.dir, folder, f"{i}.png"))
            path = self.write(os.path.join(folder, "d.jsonl"), "\n".join(
                json.dumps({"image": f"{i}.png", "text": f"caption {i % 7}"}) for i in range(60)))
            ds = user_data.read(path, vlm=True)
            heldout.append(sorted(os.path.basename(d.image) for d in ds.heldout))
        self.assertNotEmpty(heldout[0])
        self.assertEqual(heldout[0], heldout[1])

    def test_repeated_document_is_never_on_both_sides(self):
        texts = PARAGRAPHS + PARAGRAPHS[:20]
        ds = user_data.read(self.write("r.jsonl", "\n".join(json.dumps({"text": t}) for t in texts)))
        self.assertEmpty({d.text for d in ds.train} & {d.text for d in ds.heldout})
        self.assertLen(ds.train + ds.heldout, len(texts))

    def test_jsonl_text(self):
        ds = user_data.read(self.write("t.jsonl", "\n".join(json.dumps({"text": t}) for t in PARAGRAPHS) + "\n\n"))
        self.assertSplit(ds, PARAGRAPHS)

    def test_jsonl_vlm_examples(self):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(os.path.join(self.dir, "img.png"))
        rows = [{"image": "img.png", "text": t} for t in PARAGRAPHS[:10]]
        rows.append({"image": "img.png", "messages": [{"role": "user", "content": "What is it?"},
                                                      {"role": "assistant", "content": "Black."}]})
        ds = user_data.read(self.write("v.jsonl", "\n".join(map(json.dumps, rows))), vlm=True)
        docs = ds.train + ds.heldout
        self.assertLen(docs, 11)
        self.assertTrue(all(d.image == os.path.join(self.dir, "img.png") for d in docs))
        self.assertEqual(sum(d.messages is not None for d in docs), 1)

    def test_saved_dataset_and_dataset_dict(self):
        path = os.path.join(self.dir, "ds")
        datasets.Dataset.from_dict({"text": PARAGRAPHS}).save_to_disk(path)
        self.assertSplit(user_data.read(path), PARAGRAPHS)
        path = os.path.join(self.dir, "dd")
        datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": PARAGRAPHS[:50]}),
                              "validation": datasets.Dataset.from_dict({"text": PARAGRAPHS[50:]})}).save_to_disk(path)
        ds = user_data.read(path)
        self.assertEqual([d.text for d in ds.heldout], PARAGRAPHS[50:])  # the data's own held-out split
        self.assertEqual([d.text for d in ds.train], PARAGRAPHS[:50])

    def assertError(self, path, message, vlm=False):
        with self.assertRaises(user_data.DataError) as e:
            user_data.read(path, vlm=vlm)
        self.assertEqual(str(e.exception), message)
        self.assertNotIn("\n", str(e.exception))

    def test_bad_inputs_are_one_line_naming_file_and_line(self):
        d = self.dir
        self.assertError(f"{d}/missing.txt", f"{d}/missing.txt: no such file or directory")
        self.assertError(self.write("empty.txt", "\n\n  \n"), f"{d}/empty.txt: no text")
        self.assertError(self.write("latin1.txt", b"caf\xe9 au lait", "wb"), f"{d}/latin1.txt: not UTF-8 text (byte 3)")
        self.assertError(self.write("bad.jsonl", '{"text": "fine"}\n{"text": \n'),
                         f"{d}/bad.jsonl:2: invalid JSON (Expecting value)")
        self.assertError(self.write("nofield.jsonl", '{"text": "fine"}\n\n{"content": "x"}\n'),
                         f'{d}/nofield.jsonl:3: no "text" field (a language model trains on {{"text": ...}})')
        self.assertError(self.write("num.jsonl", '{"text": 5}\n'), f'{d}/num.jsonl:1: "text" is int, not a string')
        self.assertError(self.write("list.jsonl", '["text"]\n'), f"{d}/list.jsonl:1: expected a JSON object, got list")
        self.write("broken.png", "not a png")
        self.assertError(self.write("img.jsonl", '{"image": "broken.png", "text": "x"}\n'),
                         f"{d}/img.jsonl:1: unreadable image {d}/broken.png (cannot identify image file "
                         f"'{d}/broken.png')", vlm=True)
        self.assertError(self.write("noimg.jsonl", '{"text": "x"}\n'),
                         f'{d}/noimg.jsonl:1: no "image" field (a VLM trains on {{"image": path, "text" | "messages"}})',
                         vlm=True)
        self.assertError(self.write("data.csv", "a,b\n"),
                         f"{d}/data.csv: unsupported data file (.txt, .md, .jsonl, or a datasets save_to_disk folder)")
        os.makedirs(f"{d}/nothing")
        self.assertError(f"{d}/nothing", f"{d}/nothing: no .txt or .md files")
        self.assertError(self.write("one.txt", "just one paragraph"),
                         f"{d}/one.txt: too little data for a training and a held-out set (1 document(s), all held out)")


class InstalledTextTest(absltest.TestCase):
    """The default corpus of a text-only model: real installed text, never an evaluation text."""

    @classmethod
    def setUpClass(cls):
        cls.docs = installed_text.documents()
        cls.joined = "\n\x00".join(cls.docs)

    def test_kinds_and_size(self):
        self.assertGreater(len(self.joined), 3_000_000)
        self.assertTrue(any("def " in d and "import " in d for d in self.docs))        # library sources
        self.assertIn(text.split("train")[0], self.docs)                              # pydoc train paragraphs
        self.assertEqual(installed_text.documents(), self.docs)                       # the same on every call

    def test_pydoc_train_split_holds_no_held_out_paragraph(self):
        # pydoc repeats paragraphs under several topics: a copy of a test paragraph must not be a train paragraph.
        held_out = set(text.split("test")) | set(text.split("validation"))
        self.assertEqual(set(text.split("train")) & held_out, set())
        self.assertGreater(len(text.split("train")), 900)

    def test_no_evaluation_text_inside(self):
        for paragraph in text.split("test") + text.split("validation"):
            self.assertNotIn(paragraph, self.joined)
        for module in eval_texts.CODE_MODULES:
            source = __import__(module).__file__
            body = open(source, encoding="utf-8").read()
            for start in range(0, len(body) - 400, len(body) // 8):  # eight 400-character stretches of each
                self.assertNotIn(body[start: start + 400], self.joined, module)
        licence = eval_texts.load("licence")
        for start in range(0, len(licence) - 300, len(licence) // 20):
            self.assertNotIn(licence[start: start + 300], self.joined)

    def test_split_never_overlaps(self):
        ds = installed_text.dataset()
        self.assertEqual(len(ds.train) + len(ds.heldout), len(self.docs))
        self.assertEqual({d.text for d in ds.train} & {d.text for d in ds.heldout}, set())
        self.assertBetween(len(ds.heldout) / len(self.docs), 0.03, 0.08)


if __name__ == "__main__":
    absltest.main()
