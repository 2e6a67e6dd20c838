"""A procedural vision-language data set: rendered scenes with templated captions and QA pairs.

Each scene has 1-3 objects (shape × colour × size) in distinct cells of a 3×3 grid, on a random
background with noise. Captions name every object left to right, top to bottom; questions ask for
a count, an object's colour, the shape at a place, or a left/right relation. Everything derives
from (seed, split, index), so a split is the same on every machine.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230),
           "yellow": (235, 215, 40), "purple": (150, 60, 190), "white": (240, 240, 240)}
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
NUMBERS = ("zero", "one", "two", "three")
SPLITS = {"train": 0, "validation": 1, "test": 2}


@dataclasses.dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    row: int
    col: int

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"

    def place(self) -> str:
        return "in the center" if (self.row, self.col) == (1, 1) else f"at the {ROWS[self.row]} {COLS[self.col]}"


@dataclasses.dataclass(frozen=True)
class Example:
    image: np.ndarray  # uint8 [H, W, 3]
    objects: tuple[SceneObject, ...]
    caption: str
    question: str
    answer: str


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    return np.random.default_rng([seed, SPLITS[split], index])


def _objects(rng: np.random.Generator) -> tuple[SceneObject, ...]:
    count = int(rng.integers(1, 4))
    cells = rng.choice(9, size=count, replace=False)
    objs = [SceneObject(SHAPES[rng.integers(len(SHAPES))], list(COLOURS)[rng.integers(len(COLOURS))],
                        SIZES[rng.integers(len(SIZES))], int(c) // 3, int(c) % 3) for c in cells]
    return tuple(sorted(objs, key=lambda o: (o.row, o.col)))


def render(objects, size: int, rng: np.random.Generator) -> np.ndarray:
    background = tuple(int(v) for v in rng.integers(0, 90, size=3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    cell = size / 3
    for o in objects:
        radius = cell * (0.42 if o.size == "large" else 0.24)
        cx = (o.col + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        cy = (o.row + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        colour = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse(box, fill=colour)
        elif o.shape == "square":
            draw.rectangle(box, fill=colour)
        else:
            draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=colour)
    pixels = np.asarray(image, np.float32) + rng.normal(0, 8, size=(size, size, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def caption(objects) -> str:
    parts = [f"{o.phrase()} {o.place()}" for o in objects]
    body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return body[0].upper() + body[1:] + "."


def question_answer(objects, rng: np.random.Generator) -> tuple[str, str]:
    kind = int(rng.integers(4))
    if kind == 0:
        shape = SHAPES[rng.integers(len(SHAPES))]
        return f"How many {shape}s are there?", NUMBERS[sum(o.shape == shape for o in objects)]
    target = objects[int(rng.integers(len(objects)))]
    if kind == 1 and sum(o.shape == target.shape for o in objects) == 1:
        return f"What colour is the {target.shape}?", target.colour
    if kind == 2 or len(objects) == 1:
        return f"What shape is {target.place()}?", target.shape
    a, b = rng.choice(len(objects), size=2, replace=False)
    a, b = objects[int(a)], objects[int(b)]
    if a.col == b.col:
        return f"What shape is {a.place()}?", a.shape
    side = "left" if a.col < b.col else "right"
    return f"Is the {a.colour} {a.shape} left or right of the {b.colour} {b.shape}?", side


def example(seed: int, split: str, index: int, image_size: int = 48) -> Example:
    rng = _rng(seed, split, index)
    objects = _objects(rng)
    image = render(objects, image_size, rng)
    q, a = question_answer(objects, rng)
    return Example(image, objects, caption(objects), q, a)


def examples(seed: int, split: str, count: int, image_size: int = 48) -> list[Example]:
    return [example(seed, split, i, image_size) for i in range(count)]


def vocabulary_text() -> str:
    """Every word the templates can produce (for training a tokenizer)."""
    words = list(SHAPES) + [s + "s" for s in SHAPES] + list(COLOURS) + list(SIZES) + list(ROWS) + list(COLS)
    words += list(NUMBERS) + "a at the in and How many are there What colour is shape Is left or right of".split()
    return " ".join(words) + " . , ?"


def fingerprint(items: list[Example]) -> int:
    """A checksum of a list of examples (images and texts), for determinism checks."""
    crc = 0
    for e in items:
        crc = zlib.crc32(e.image.tobytes(), crc)
        crc = zlib.crc32((e.caption + e.question + e.answer).encode(), crc)
    return crc
