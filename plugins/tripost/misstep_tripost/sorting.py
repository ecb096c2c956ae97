"""Word sorting (BIG-bench): the question generator and the scripted rationale.

The rationale compares first letters by their alphabet index, groups ties, sorts each tied group by
the next letter in a numbered sub-step (recursively), and merges::

    (1) The first letter: "dot"="d" (4), "barn"="b" (2), "damp"="d" (4).
    (2) We now have: (2) "barn" < (4) ["dot" ? "damp"].
    (3) Now sort this subpart ["dot" ? "damp"] by looking at their second letters: "dot"="o" (15), "damp"="a" (1).
    (3.1) We now have: (1) "damp" < (15) "dot".
    (3.2) Hence, we have "damp" < "dot".
    (4) Hence, we have "barn" < "damp" < "dot".
    (Final response) So the answer is: barn damp dot.

When all the words of a sub-step tie again they are re-sorted by the next letter at the same level
(``(3.2) Now sort this subpart ... third letters``, ``(3.3) We now have ...``); at the top level a full
tie is an ordinary tied group. A letter's index is its code point minus
96 (a=1, z=26, ``'`` = -57), a word that has run out of letters has -96: the order is Python's.
The reference rationales number a block's second and later tied groups with the first one's id
(26 of 1,880 have duplicate ids); here each tied group gets the next number, and :func:`renumber`
fixes reference rationales.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from misstep_tripost.checking import Problem, wrong_id
from misstep_tripost.text import FINAL, Step

_UNITS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
          "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth", "eighteenth",
          "nineteenth"]
_TENS = {20: "twentieth", 30: "thirtieth", 40: "fortieth"}
_TENS_PREFIX = {20: "twenty", 30: "thirty", 40: "forty"}
_ENTRY = re.compile(r'"([^"]*)"="([^"]*)" \((-?\d+)\)')
_QUOTED = re.compile(r'"([^"]*)"')

# A small offline vocabulary for the generator, with shared prefixes so that ties happen.
WORDS = """
able about absent absorb abstract accent access acid acorn across action actor adapt admit adobe adult
baker balance ballad bamboo banana band banner barn barrel basin basket batch battle beacon beard beaver
cabin cable cactus camel camera camp canal candle canvas canyon carbon cargo carpet carrot castle cattle
dagger daisy damp dance danger dart dawn debate decade decoy deed delta denim depot desert design detail
eager eagle earth easel echo eclipse edge editor effect elbow elder elect element elephant elevator ember
fabric falcon fancy farm fashion feast feather fence ferry fever fiber fiction field figure filter finger
gadget galaxy gallon gamble garage garden garlic garment gasket gather gazelle gecko gem general genius
habit hammer hamster handle harbor harvest hatch hazard heart heaven helmet hermit hero hinge history
icicle icon idea igloo image impact import inch index infant ink inlet insect island item ivory
jacket jaguar jam jar jasmine javelin jazz jelly jersey jewel jigsaw jockey journal judge juggle jungle
kayak keel kennel kettle kidney kilt kimono kingdom kiosk kitchen kitten knee knight knot koala
label ladder lagoon lamp lantern laptop lava lawn layer leader leaf leather lemon lens lesson letter
magnet maize mammal mango manner maple marble margin market marsh mask meadow medal melon mentor method
napkin narrow nation nature navy nectar needle nephew nerve nest network nickel night noble noodle
oasis object ocean octave office olive omelet onion opera orange orbit orchard orchid organ otter oven
paddle palace palm panda panel panther paper parade parcel parrot pasta pastel patrol pebble pencil
quarry quartz queen quest quick quiet quill quilt quiver quota quote
rabbit radar radio raft rain ramp ranch random raven razor reason rebel recipe record reef relic remedy
saddle safari salad salmon salt sample sandal satin saucer savage scale scarf scholar school season
table tablet tackle tailor talent tandem tangle target tavern teacher temple tenant tender tennis tent
umbrella uncle unicorn uniform union unit universe urchin usher utensil
vacuum valley valve vanilla vapor vassal velvet vendor venom verb verse vessel veteran village violin
wafer wagon waist walnut walrus wander warden water wax weapon weasel weather wedge whale wheat whisk
yacht yard yarn year yeast yellow yoga yogurt yolk youth
zebra zenith zephyr zero zigzag zinc zipper zodiac zone
""".split()


def ordinal(n: int) -> str:
    """``first`` ... ``forty-ninth`` (1-based)."""
    if n < 20:
        return _UNITS[n]
    tens, unit = n - n % 10, n % 10
    if tens not in _TENS:
        raise ValueError(f"no ordinal for {n}")
    return _TENS[tens] if unit == 0 else f"{_TENS_PREFIX[tens]}-{_UNITS[unit]}"


_ORDINALS = {ordinal(n): n for n in range(1, 50)}


def letter(word: str, index: int) -> str:
    return word[index] if index < len(word) else ""


def rank(character: str) -> int:
    """The alphabet index the rationales use: code point minus 96; a missing letter is -96."""
    return (ord(character) if character else 0) - 96


def entries(words: list[str], index: int) -> str:
    return ", ".join(f'"{w}"="{letter(w, index)}" ({rank(letter(w, index))})' for w in words)


def grouped(words: list[str], index: int) -> list[tuple[int, list[str]]]:
    """The words by their letter's index, ascending; tied words keep their order."""
    groups: dict[int, list[str]] = {}
    for word in words:
        groups.setdefault(rank(letter(word, index)), []).append(word)
    return sorted(groups.items())


def _item(number: int, words: list[str]) -> str:
    if len(words) == 1:
        return f'({number}) "{words[0]}"'
    return f"({number}) [" + " ? ".join(f'"{w}"' for w in words) + "]"


def _bracket(words: list[str]) -> str:
    return "[" + " ? ".join(f'"{w}"' for w in words) + "]"


def question_words(question: str) -> list[str]:
    """The words after ``List:``."""
    match = re.search(r"List:(.*)", question, re.S)
    return match.group(1).split() if match else []


def make_question(words: list[str]) -> str:
    return "Sort the following words alphabetically:\nList: " + " ".join(words)


def generate(rng: random.Random, count: int, vocabulary: list[str] = WORDS) -> str:
    return make_question(rng.sample(vocabulary, count))


@dataclass
class _Block:
    """Words being sorted by the letter at ``index``; their steps are numbered ``prefix`` + counter."""

    words: list[str]
    index: int
    prefix: str
    counter: int
    phase: str  # letters, order, resort, groups, hence, final
    letters_step: str = ""
    ranks: dict[str, int] = field(default_factory=dict)
    pending: list[list[str]] = field(default_factory=list)

    def next_id(self) -> str:
        return f"{self.prefix}{self.counter}"


@dataclass
class SortingMachine:
    """Checks and writes the rationale of one word sorting question (see the module docstring)."""

    question: str
    words: list[str] = field(init=False)
    stack: list[_Block] = field(init=False)
    done: bool = False

    def __post_init__(self) -> None:
        self.words = question_words(self.question)
        self.stack = [_Block(self.words, 0, "", 1, "letters")]

    # writing

    def expect(self) -> Step | None:
        if self.done:
            return None
        block = self.stack[-1]
        if block.phase == "letters":
            return Step(block.next_id(), f"The first letter: {entries(block.words, 0)}.")
        if block.phase == "order":
            items = " < ".join(_item(n, ws) for n, ws in grouped(block.words, block.index))
            return Step(block.next_id(), f"We now have: {items}.")
        if block.phase in ("resort", "groups"):
            words, index = (block.words, block.index + 1) if block.phase == "resort" else (block.pending[0], block.index + 1)
            return Step(block.next_id(), f"Now sort this subpart {_bracket(words)} by looking at their "
                                         f"{ordinal(index + 1)} letters: {entries(words, index)}.")
        if block.phase == "hence":
            return Step(block.next_id(), "Hence, we have " + " < ".join(f'"{w}"' for w in sorted(block.words)) + ".")
        return Step(FINAL, "So the answer is: " + " ".join(sorted(self.words)) + ".")

    # checking

    def check(self, step: Step) -> Problem | None:
        if self.done:
            return Problem(step.text, "the words were already sorted")
        block = self.stack[-1]
        text = step.text.strip()
        if block.phase == "final" or step.id == FINAL:
            return self._check_final(step, block)
        problem = wrong_id(step, block.next_id())
        if problem:
            return problem
        if text.startswith("The first letter:") and block.phase == "letters":
            problem = self._check_letters(text.removeprefix("The first letter:"), block.words, 0)
            if problem is None:
                block.ranks = {w: rank(letter(w, 0)) for w in block.words}
                block.phase, block.letters_step = "order", step.id
                block.counter += 1
        elif text.startswith("We now have:") and block.phase == "order":
            problem = self._check_order(text.removeprefix("We now have:"), block)
        elif text.startswith("Now sort this subpart") and block.phase in ("resort", "groups"):
            problem = self._check_subpart(text, block, step.id)
        elif text.startswith("Hence, we have") and block.phase == "hence":
            problem = self._check_hence(text.removeprefix("Hence, we have"), block)
        else:
            problem = Problem(text, self._what_next(block))
        return problem

    def _what_next(self, block: _Block) -> str:
        if block.phase == "letters":
            return "the first step should give the first letter of every word"
        if block.phase == "order":
            return "the words should now be ordered by their letters"
        if block.phase == "resort":
            return f"all the words of {_bracket(block.words)} tie, so they should be sorted by their next letter"
        if block.phase == "groups":
            return f"the subpart {_bracket(block.pending[0])} has not been sorted yet"
        return f"the words of {_bracket(block.words)} should now be put together in order"

    def _check_letters(self, text: str, words: list[str], index: int) -> Problem | None:
        text = text.strip().removesuffix(".")
        found = _ENTRY.findall(text)
        if not found or ", ".join(f'"{w}"="{c}" ({n})' for w, c, n in found) != text:
            return Problem(text, "it is not a list of words with their letters, as in \"word\"=\"w\" (23)")
        seen: set[str] = set()
        for word, character, number in found:
            entry = f'"{word}"="{character}" ({number})'
            if word not in words:
                return Problem(entry, f'"{word}" is not one of the words to sort: {" ".join(words)}')
            if word in seen:
                return Problem(entry, f'"{word}" appears twice')
            seen.add(word)
            if character != letter(word, index):
                return Problem(entry, f'the {ordinal(index + 1)} letter of "{word}" is "{letter(word, index)}"')
            if int(number) != rank(character):
                return Problem(entry, f'the alphabetical order of "{character}" is {rank(character)}')
        missing = [w for w in words if w not in seen]
        if missing:
            return Problem(text, f'"{missing[0]}" is missing')
        return None

    def _check_order(self, text: str, block: _Block) -> Problem | None:
        text = text.strip().removesuffix(".")
        items = [part.strip() for part in text.split(" < ")]
        groups: list[tuple[int, list[str]]] = []
        seen: set[str] = set()
        for item in items:
            match = re.fullmatch(r'\((-?\d+)\) (?:"([^"]*)"|\[(.*)\])', item)
            if not match:
                return Problem(item, 'it should be a number and a word, as in (2) "barn", or a group, as in (4) ["dot" ? "damp"]')
            words = [match.group(2)] if match.group(2) is not None else _QUOTED.findall(match.group(3))
            if match.group(3) is not None and len(words) < 2:
                return Problem(item, f"{item} has only a single word, so it is not a subpart that needs sorting")
            for word in words:
                if word not in block.ranks:
                    return Problem(item, f'"{word}" is not one of the words to sort: {" ".join(block.words)}')
                if word in seen:
                    return Problem(item, f'"{word}" appears twice')
                seen.add(word)
                if block.ranks[word] != int(match.group(1)):
                    return Problem(item, f'"{word}" has the number ({block.ranks[word]}) in step ({block.letters_step})')
            if groups and groups[-1][0] >= int(match.group(1)):
                previous = groups[-1]
                return Problem(f"{_item(*previous)} < {item}",
                               "the words are not sorted in ascending order" if previous[0] > int(match.group(1))
                               else f"the words with ({previous[0]}) should be in one group")
            groups.append((int(match.group(1)), words))
        missing = [w for w in block.words if w not in seen]
        if missing:
            return Problem(text, f'"{missing[0]}" is missing')
        tied = [words for _, words in groups if len(words) > 1]
        block.counter += 1
        if len(groups) == 1 and len(block.words) > 1 and block.prefix:
            block.phase = "resort"
        else:
            block.pending = tied
            block.phase = "groups" if tied else "hence"
        return None

    def _check_subpart(self, text: str, block: _Block, step_id: str) -> Problem | None:
        match = re.fullmatch(r"Now sort this subpart \[(.*?)\] by looking at their ([\w-]+) letters:(.*)", text)
        if not match:
            return Problem(text, 'it should say: Now sort this subpart ["a" ? "b"] by looking at their second letters: ...')
        words = _QUOTED.findall(match.group(1))
        target = block.words if block.phase == "resort" else block.pending[0]
        if sorted(words) != sorted(target):
            reason = (f"all the words of {_bracket(block.words)} tie, so they should be sorted again"
                      if block.phase == "resort" else f"the next subpart to sort is {_bracket(target)}")
            return Problem(_bracket(words), reason)
        index = block.index + 1
        if _ORDINALS.get(match.group(2)) != index + 1:
            return Problem(f"their {match.group(2)} letters", f"these words should be compared by their {ordinal(index + 1)} letters")
        problem = self._check_letters(match.group(3), words, index)
        if problem is not None:
            return problem
        ranks = {w: rank(letter(w, index)) for w in words}
        if block.phase == "resort":
            block.index, block.phase, block.letters_step, block.ranks = index, "order", step_id, ranks
            block.counter += 1
        else:
            self.stack.append(_Block(words, index, f"{step_id}.", 1, "order", letters_step=step_id, ranks=ranks))
        return None

    def _check_hence(self, text: str, block: _Block) -> Problem | None:
        text = text.strip().removesuffix(".")
        words = _QUOTED.findall(text)
        if " < ".join(f'"{w}"' for w in words) != text:
            return Problem(text, 'it should list the words in order, as in "barn" < "damp"')
        expected = sorted(block.words)
        if sorted(words) != expected:
            extra = [w for w in words if w not in expected or words.count(w) > 1]
            missing = [w for w in expected if w not in words]
            reason = f'"{missing[0]}" is missing' if missing else f'"{extra[0]}" does not belong here'
            return Problem(text, reason)
        for first, second in zip(words, words[1:]):
            if first > second:
                return Problem(f'"{first}" < "{second}"', f'"{second}" should come before "{first}"')
        self._finish(block)
        return None

    def _finish(self, block: _Block) -> None:
        if len(self.stack) == 1:
            block.phase = "final"
            return
        self.stack.pop()
        parent = self.stack[-1]
        parent.counter += 1
        parent.pending.pop(0)
        parent.phase = "groups" if parent.pending else "hence"

    def _check_final(self, step: Step, block: _Block) -> Problem | None:
        text = step.text.strip()
        if step.id != FINAL or block.phase != "final":
            return Problem(text, self._what_next(block) if step.id == FINAL else "the final response should come now")
        match = re.fullmatch(r"So the answer is:(.*)", text)
        if not match:
            return Problem(text, "it should say: So the answer is: <the words in order>.")
        given = match.group(1).strip().removesuffix(".").split()
        if given != sorted(self.words):
            return Problem(f"the answer is: {' '.join(given)}.",
                           f"this answer is inconsistent with the result in step ({block.counter})")
        self.done = True
        return None


def answer(steps: list[Step]) -> list[str] | None:
    """The words the final response lists."""
    match = re.search(r"the answer is:(.*)", steps[-1].text) if steps else None
    return match.group(1).strip().removesuffix(".").split() if match else None


def renumber(steps: list[Step], question: str) -> list[Step]:
    """``steps`` with the ids the machine expects (fixes the reference's duplicate sub-step ids)."""
    machine = SortingMachine(question)
    fixed = []
    for step in steps:
        expected = machine.expect()
        if expected is not None and step.id != FINAL and expected.id != FINAL:
            step = Step(expected.id, step.text)
        machine.check(step)
        fixed.append(step)
    return fixed
