"""The fast path: a rule-based parser from plain-language instructions to intents.

No network, no model, tens of microseconds. It knows the words people use for the three
tasks ("shove", "slide", "grab and place", "bring the hand to"...), the scene's objects
(by colour or name, "the crimson one", "the leftmost block"), places ("the back left
corner", "the middle"), directions ("a bit to the left", "leftwards", "10 cm towards the
robot") and relations ("next to the green block", "on top of the blue one").

Every word must be accounted for. Anything it does not know or cannot settle lowers the
confidence: unknown words, negation, several steps, two targets, a missing target or
object, an ambiguous reference. The contract is *never a wrong spec with high
confidence*: below the threshold, the instruction is escalated (memory, then the LLM).

Pipeline: :func:`normalise` (lowercase, split units, strip punctuation) -> :func:`lex`
(greedy longest-phrase match into symbols) -> :meth:`FastParser.parse` (one pass over the
symbols filling task, object and target slots) -> :class:`FastResult`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from reflexarc.planner.instruct.scene import COLOURS, SceneInfo
from reflexarc.planner.instruct.spec import Intent, Target

# --------------------------------------------------------------------------------------
# Lexicon
# --------------------------------------------------------------------------------------


class Sym(NamedTuple):
    """One lexed unit: ``kind`` (verb, colour, side, to, rel, ...), a canonical ``value``,
    the confidence that the words mean that, and the words themselves."""

    kind: str
    value: str
    conf: float
    words: str


_VERBS = {
    # push: slide the object along the table
    "push": "push", "shove": "push", "slide": "push", "nudge": "push", "drag": "push",
    "scoot": "push", "bump": "push", "budge": "push", "pushing": "push", "sliding": "push",
    "a push": "push", "a nudge": "push", "a shove": "push",
    # move: push, unless the target is on top of something (then pick and place)
    "move": "move", "shift": "move", "bring": "move", "get": "move", "relocate": "move",
    "reposition": "move", "moving": "move",
    # place: pick and place
    "put": "place", "place": "place", "set": "place", "stack": "place", "drop": "place",
    "lay": "place", "deposit": "place", "carry": "place", "transfer": "place",
    "transport": "place", "put down": "place", "set down": "place", "place down": "place",
    "stack up": "place",
    # grab: the pick half of pick and place
    "grab": "grab", "grasp": "grab", "pick": "grab", "pick up": "grab", "take": "grab",
    "lift": "grab", "lift up": "grab", "hold": "grab", "seize": "grab", "pick and place": "place",
    "grab and place": "place", "pick and put": "place",
    # reach: move the hand
    "touch": "reach", "reach": "reach", "reach for": "reach", "reach out to": "reach",
    "reach out for": "reach", "go": "reach", "tap": "reach", "approach": "reach",
    "point": "reach", "point at": "reach", "point to": "reach", "hover": "reach",
    "visit": "reach", "head": "reach", "go and touch": "reach", "hover over": "reach",
    "hover above": "reach",
}

_COLOUR_WORDS = {c: (c, 1.0) for c in COLOURS}
_COLOUR_WORDS.update({
    "gray": ("grey", 1.0),
    "crimson": ("red", 0.9), "scarlet": ("red", 0.9), "ruby": ("red", 0.85),
    "cherry": ("red", 0.85), "reddish": ("red", 0.9),
    "emerald": ("green", 0.85), "lime": ("green", 0.85), "greenish": ("green", 0.9),
    "navy": ("blue", 0.85), "azure": ("blue", 0.85), "sky blue": ("blue", 0.9),
    "bluish": ("blue", 0.9), "blueish": ("blue", 0.9),
})

_SIDES = {
    "left": ("left", 1.0), "right": ("right", 1.0),
    "front": ("front", 1.0), "back": ("back", 1.0), "rear": ("back", 1.0),
    "center": ("center", 1.0), "centre": ("center", 1.0), "middle": ("center", 1.0),
    "near": ("near", 1.0), "far": ("far", 1.0),
    "top": ("back", 0.7), "bottom": ("front", 0.7),  # top/bottom of a camera image? or height?
    "left hand": ("left", 1.0), "right hand": ("right", 1.0),
}

_SELECTORS = {
    "leftmost": "left", "rightmost": "right", "nearest": "front", "closest": "front",
    "farthest": "back", "furthest": "back", "frontmost": "front", "backmost": "back",
}

_DIRS = {
    "leftwards": "left", "leftward": "left", "rightwards": "right", "rightward": "right",
    "forward": "forward", "forwards": "forward", "ahead": "forward", "outward": "forward",
    "outwards": "forward", "backward": "backward", "backwards": "backward",
    "inward": "backward", "inwards": "backward", "up": "up", "upward": "up", "upwards": "up",
    "down": "down", "downward": "down", "downwards": "down",
    "towards the robot": "backward", "toward the robot": "backward",
    "towards you": "backward", "toward you": "backward", "towards the base": "backward",
    "toward the base": "backward", "towards yourself": "backward",
    "away from the robot": "forward", "away from you": "forward", "away from the base": "forward",
    "further away": "forward", "farther away": "forward", "away": "forward",
}

_UNITS = {
    "cm": 0.01, "centimeter": 0.01, "centimeters": 0.01, "centimetre": 0.01, "centimetres": 0.01,
    "mm": 0.001, "millimeter": 0.001, "millimeters": 0.001, "millimetre": 0.001,
    "millimetres": 0.001, "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
    "inch": 0.0254, "inches": 0.0254,
    # "one block to the left": block widths (5 cm cubes)
    "block": 0.05, "blocks": 0.05, "cube": 0.05, "cubes": 0.05,
}
_NUMBER_WORDS = {
    "one": 1.0, "two": 2.0, "three": 3.0, "four": 4.0, "five": 5.0, "six": 6.0, "seven": 7.0,
    "eight": 8.0, "nine": 9.0, "ten": 10.0, "eleven": 11.0, "twelve": 12.0, "fifteen": 15.0,
    "twenty": 20.0, "thirty": 30.0, "a few": 3.0, "a couple": 2.0, "a couple of": 2.0,
}

_SIMPLE: dict[str, tuple[str, str, float]] = {}


def _add(kind: str, value: str, conf: float, *phrases: str) -> None:
    for p in phrases:
        _SIMPLE[p] = (kind, value, conf)


_add("noun", "", 1.0, "block", "cube", "box", "brick", "object", "thing", "piece", "one", "item")
_add("pron", "", 1.0, "it", "that", "this", "that one", "this one")
_add("eff", "", 1.0, "hand", "gripper", "arm", "end effector", "effector", "tool", "fingers",
     "claw", "your hand", "your gripper", "your arm", "the hand", "ee", "tool tip", "endeffector")
_add("to", "", 1.0, "to", "into", "in", "at", "over to", "across to", "all over to",
     "out to", "in to", "up to", "over into", "in the direction of the", "back to", "back into")
_add("toward", "", 1.0, "towards", "toward", "in the direction of", "back towards", "back toward")
_add("rel", "next_to", 1.0, "next to", "beside", "besides", "alongside", "adjacent to",
     "right next to", "close to", "by the side of", "near to", "right beside", "nearby")
_add("rel", "on", 1.0, "on", "onto", "on to", "on top of", "atop", "upon", "on the top of",
     "on top", "over", "above", "right on top of", "up on")
_add("rel", "in_front_of", 1.0, "in front of", "just in front of", "before")
_add("rel", "behind", 1.0, "behind", "in back of", "just behind", "at the back of")
_add("closer", "", 1.0, "closer to", "nearer to", "closer", "nearer")
_add("away", "", 1.0, "away from")
_add("by", "", 1.0, "by")
_add("of", "", 1.0, "of")
_add("robot", "", 1.0, "robot", "you", "yourself", "the base", "base", "the robot")
_add("area", "side", 1.0, "side", "edge", "half", "end", "part", "area", "region", "zone",
     "spot", "border", "position", "location", "portion", "sector")
_add("area", "corner", 1.0, "corner")
_add("table", "", 1.0, "table", "workspace", "board", "surface", "tabletop", "work area")
_add("small", "0.5", 1.0, "a bit", "a little", "a little bit", "slightly", "a tad",
     "a smidge", "a hair", "somewhat", "just a bit", "a tiny bit", "a touch", "little")
_add("large", "2.0", 1.0, "a lot", "much", "way", "a long way", "quite a bit", "a good bit")
_add("allway", "", 1.0, "all the way", "as far as possible", "as far as you can",
     "as far as it goes", "the very", "all the way to", "all the way over to")
_add("neg", "", 1.0, "not", "no", "never", "dont", "without", "except", "instead",
     "nothing", "none", "stop", "cancel", "avoid", "neither", "nor", "unless", "undo")
_add("seq", "", 1.0, "after", "before that", "first", "finally", "also", "again", "twice",
     "while", "until", "once", "next", "thrice", "repeatedly", "times", "back and forth")
_add("and", "", 1.0, "and", "plus", "then", "and then", "after that", "afterwards")
_add("fill", "", 1.0, "the", "a", "an", "please", "pls", "can", "could", "would", "will",
     "kindly", "just", "now", "gently", "carefully", "slowly", "quickly", "softly",
     "lightly", "firmly", "hey", "ok", "okay", "i want you to", "i would like you to",
     "i d like you to", "i need you to", "go ahead and", "try to", "lets", "let us",
     "for me", "thanks", "thank you", "its", "right now", "right away", "over", "so",
     "its current position", "from where it is", "from its current position",
     "currently", "exactly", "straight", "directly", "precisely", "nicely", "over there to",
     "do", "me", "kind of", "about", "around", "roughly", "approximately", "some", "give",
     "further", "farther", "more")
for _w, (_c, _k) in _COLOUR_WORDS.items():
    _add("colour", _c, _k, _w)
for _w, (_s, _k) in _SIDES.items():
    _add("side", _s, _k, _w)
for _w, _s in _SELECTORS.items():
    _add("sel", _s, 1.0, _w)
for _w, _d in _DIRS.items():
    _add("dir", _d, 1.0, _w)
for _w, _v in _VERBS.items():
    _add("verb", _v, 1.0, _w)
_add("verb", "move", 0.95, "get")  # "get the red block to the left"
_add("dir", "forward", 0.9, "away")  # away from what? usually the robot
del _SIMPLE["over"]  # "over" alone: "hover over the block" (on) vs filler; keep the relation
_SIMPLE["over"] = ("rel", "on", 0.9)

_INDEX: dict[str, list[tuple[tuple[str, ...], tuple[str, str, float]]]] = {}
for _p, _sym in _SIMPLE.items():
    _words = tuple(_p.split())
    _INDEX.setdefault(_words[0], []).append((_words, _sym))
for _lst in _INDEX.values():
    _lst.sort(key=lambda e: -len(e[0]))  # longest phrase first
_NUMBER_INDEX = {tuple(k.split()): v for k, v in _NUMBER_WORDS.items()}
_NUMBER_FIRST = frozenset(k[0] for k in _NUMBER_INDEX)

# --------------------------------------------------------------------------------------
# Normalisation and lexing
# --------------------------------------------------------------------------------------

_APOS = re.compile(r"[’`´]")
_POSSESSIVE = re.compile(r"'s\b")
_NOT = re.compile(r"n't\b")
_NUM_UNIT = re.compile(r"(\d)(cm|mm|m)\b")
_NON_WORD = re.compile(r"[^a-z0-9.]+")
_STRAY_DOT = re.compile(r"(?<![0-9])\.|\.(?![0-9])")
_NUMBER = re.compile(r"^\d+(\.\d+)?$|^\.\d+$")


def normalise(text: str) -> list[str]:
    """Lowercase words and numbers: "Push the red block 10cm left!" -> [push, the, red,
    block, 10, cm, left]. "don't" -> "do not"; possessive 's and punctuation are dropped."""
    t = _APOS.sub("'", text.lower())
    t = _NOT.sub(" not", t)
    t = _POSSESSIVE.sub("", t)
    t = _NUM_UNIT.sub(r"\1 \2", t)
    t = _NON_WORD.sub(" ", t)
    t = _STRAY_DOT.sub(" ", t)
    return t.split()


def normalised_text(text: str) -> str:
    """The memory key of an instruction: its normalised words joined by spaces."""
    return " ".join(normalise(text))


def lex(words: list[str], names: dict[str, str]) -> list[Sym]:
    """Greedy longest-match of ``words`` into symbols. ``names`` maps the scene's
    non-colour object names (lowercase) to object names. Unknown words become
    ``Sym("unknown", word, 0.5, word)``."""
    out: list[Sym] = []
    i, n = 0, len(words)
    while i < n:
        w = words[i]
        numeric = _NUMBER.match(w) is not None
        if numeric or w in _NUMBER_FIRST:
            num, used = _number(words, i)
            if num is not None:
                j = i + used
                if j < n and words[j] == "of":
                    j += 1  # "a couple of cm"
                if j < n and words[j] in _UNITS:
                    dist = num * _UNITS[words[j]]
                    out.append(Sym("dist", repr(dist), 1.0, " ".join(words[i : j + 1])))
                    i = j + 1
                    continue
            if numeric:
                out.append(Sym("unknown", w, 0.5, w))  # a number without a unit
                i += 1
                continue
        if w in names:
            out.append(Sym("name", names[w], 1.0, w))
            i += 1
            continue
        for phrase, (kind, value, conf) in _INDEX.get(w, ()):
            k = len(phrase)
            if tuple(words[i : i + k]) == phrase:
                out.append(Sym(kind, value, conf, " ".join(phrase)))
                i += k
                break
        else:
            out.append(Sym("unknown", w, 0.5, w))
            i += 1
    return out


def _number(words: list[str], i: int) -> tuple[float | None, int]:
    w = words[i]
    if _NUMBER.match(w):
        return float(w), 1
    two = tuple(words[i : i + 2])
    if two in _NUMBER_INDEX:
        return _NUMBER_INDEX[two], 2
    if (w,) in _NUMBER_INDEX:
        return _NUMBER_INDEX[(w,)], 1
    return None, 0


# --------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------

_OBJECT_KINDS = frozenset(("colour", "name", "noun", "pron", "sel"))
_SIDE_REL = {"left": "left_of", "right": "right_of", "front": "in_front_of", "back": "behind",
             "near": "in_front_of", "far": "behind"}
_CORNER = {("front", "left"): "front_left", ("front", "right"): "front_right",
           ("back", "left"): "back_left", ("back", "right"): "back_right"}
_DEPTH = {"front": "front", "near": "front", "back": "back", "far": "back"}


def _skip_fill(syms: list[Sym], j: int) -> int:
    while j < len(syms) and syms[j].kind == "fill":
        j += 1
    return j


@dataclass(frozen=True, slots=True)
class FastResult:
    """What the fast parser made of an instruction.

    ``intent`` is its best reading (None when it has none), ``confidence`` in [0, 1] how
    sure it is, ``reasons`` why the confidence is below 1, ``refusal`` a reason to refuse
    that no other reading can fix (e.g. an object that is not in the scene), ``key`` the
    normalised text (memory key).
    """

    intent: Intent | None
    confidence: float
    reasons: tuple[str, ...]
    refusal: str
    key: str

    def confident(self, threshold: float) -> bool:
        return self.confidence >= threshold and (self.intent is not None or bool(self.refusal))


@dataclass
class _Mention:
    """An object mention: the object it resolved to ("" if unresolved) and its position
    in the symbol list."""

    name: str
    at: int


class _State:
    """Slots filled during one pass over the symbols."""

    __slots__ = ("verbs", "effector", "mentions", "targets", "dist", "scale", "conf",
                 "reasons", "pending", "refusal", "links")

    def __init__(self) -> None:
        self.verbs: list[str] = []
        self.effector = False
        self.mentions: list[_Mention] = []  # direct-object mentions
        self.targets: list[tuple[str, str, str]] = []  # (kind, name, ref)
        self.dist: float | None = None
        self.scale = 1.0
        self.conf = 1.0
        self.reasons: list[str] = []
        self.pending: Sym | None = None  # a preposition waiting for its complement
        self.refusal = ""
        self.links = 0  # "and"/"then" between words

    def penalise(self, factor: float, reason: str) -> None:
        self.conf *= factor
        self.reasons.append(reason)


class FastParser:
    """Rule-based instruction parser over a scene's known objects, places and verbs.

    ``distance`` is the default length of a direction in metres ("a bit" halves it);
    it only scales explicit modifiers, the plain default stays symbolic (None) so that
    it is resolved with the configured value.
    """

    def __init__(self, distance: float = 0.10) -> None:
        self.distance = distance

    def parse(self, text: str, scene: SceneInfo) -> FastResult:
        words = normalise(text)
        key = " ".join(words)
        if not words:
            return FastResult(None, 0.0, ("empty instruction",), "", key)
        names = {o.name.lower(): o.name for o in scene.objects if o.name.lower() not in _SIMPLE}
        syms = lex(words, names)
        st = _State()
        self._scan(syms, scene, st)
        return self._decide(st, scene, key)

    # ---------------------------------------------------------------- the one pass

    def _scan(self, syms: list[Sym], scene: SceneInfo, st: _State) -> None:
        i, n = 0, len(syms)
        while i < n:
            s = syms[i]
            k = s.kind
            if k == "fill":
                i += 1
                continue
            if s.conf < 1.0 and k not in ("colour", "side", "unknown"):
                st.penalise(s.conf, f"'{s.words}' is not certain")
            if k == "unknown":
                st.penalise(0.5, f"unknown word '{s.value}'")
            elif k == "verb":
                if st.pending is not None:
                    st.penalise(0.5, f"'{st.pending.words}' is not followed by a place or object")
                    st.pending = None
                st.verbs.append(s.value)
            elif k == "eff":
                if st.pending is not None:
                    st.penalise(0.3, "the hand as a target")
                st.effector = True
            elif k in _OBJECT_KINDS:
                i = self._object(syms, i, scene, st)
                continue
            elif k == "side":
                i = self._side(syms, i, scene, st)
                continue
            elif k in ("to", "toward", "rel", "closer", "by", "allway", "away"):
                if st.pending is not None and st.pending.kind != "allway":
                    st.penalise(0.5, f"'{st.pending.words}' is not followed by a place or object")
                if k == "by" and i + 1 < n and syms[i + 1].kind in ("dist", "small", "large"):
                    i += 1
                    continue
                if k == "away" and self._next_is(syms, i, "robot"):
                    st.targets.append(("direction", "forward", ""))
                    i = self._skip_to(syms, i, "robot") + 1
                    continue
                if k == "away":
                    st.penalise(0.3, "'away from' something other than the robot")
                st.pending = s
            elif k == "robot":
                self._robot(s, st)
            elif k == "dir":
                if s.value in ("up", "down") and st.verbs and st.verbs[-1] in ("grab", "place") and not st.effector:
                    i += 1  # a particle: "pick the block up", "put it down"
                    continue
                st.targets.append(("direction", s.value, ""))
                st.pending = None
            elif k == "dist":
                st.dist = float(s.value)
            elif k == "small":
                st.scale *= 0.5
            elif k == "large":
                st.scale *= 2.0
            elif k == "neg":
                st.penalise(0.05, f"negation '{s.words}'")
            elif k in ("seq", "and"):
                st.links += 1
                if k == "seq":
                    st.penalise(0.3, f"'{s.words}': several steps or repetitions")
                if st.pending is not None:
                    st.penalise(0.5, f"'{st.pending.words}' is not followed by a place or object")
                    st.pending = None
            elif k in ("area", "table"):
                if st.pending is not None and k == "table" and st.pending.value == "on":
                    st.penalise(0.3, "'on the table' does not say where on the table")
                elif k == "area" and s.value == "corner":
                    st.penalise(0.3, "'the corner' does not say which corner")
                else:
                    st.penalise(0.5, f"'{s.words}' without a side")
                st.pending = None
            elif k == "of":
                st.penalise(0.7, "stray 'of'")
            i += 1
        if st.pending is not None:
            st.penalise(0.5, f"'{st.pending.words}' is not followed by a place or object")

    @staticmethod
    def _next_is(syms: list[Sym], i: int, kind: str) -> bool:
        for s in syms[i + 1 :]:
            if s.kind != "fill":
                return s.kind == kind
        return False

    @staticmethod
    def _skip_to(syms: list[Sym], i: int, kind: str) -> int:
        for j in range(i + 1, len(syms)):
            if syms[j].kind == kind:
                return j
        return len(syms) - 1

    def _robot(self, s: Sym, st: _State) -> None:
        p = st.pending
        if p is None:
            return  # "robot, push ...", "can you push ..."
        if p.kind in ("toward", "closer"):
            st.targets.append(("direction", "backward", ""))
        elif p.kind == "to" or (p.kind == "rel" and p.value == "next_to"):
            st.targets.append(("place", "front", ""))
            st.penalise(0.9, "'to the robot' read as the front of the table")
        else:
            st.penalise(0.3, f"'{p.words} the robot'")
        st.pending = None

    def _resolve_mention(self, syms: list[Sym], i: int, scene: SceneInfo, st: _State) -> tuple[str, int]:
        """The object named by the mention starting at ``i`` ("" if unresolved) and the
        index after it (a colour or selector followed by a noun is one mention)."""
        if i >= len(syms) or syms[i].kind not in _OBJECT_KINDS:
            st.penalise(0.3, "a relation without an object")
            return "", i
        s = syms[i]
        j = i + 1
        if s.kind in ("colour", "sel", "name") and j < len(syms) and syms[j].kind == "noun":
            j += 1
        if s.kind == "name":
            return s.value, j
        if s.kind == "colour":
            matches = [o.name for o in scene.objects if o.colour == s.value or o.name == s.value]
            if s.conf < 1.0:
                st.penalise(s.conf, f"'{s.words}' read as {s.value}")
            if len(matches) == 1:
                return matches[0], j
            if not matches:
                if not st.refusal:
                    st.refusal = (
                        f"there is no {s.words} object in the scene; objects: "
                        + ", ".join(scene.names)
                    )
                return "", j
            st.penalise(0.3, f"{len(matches)} {s.value} objects")
            return "", j
        if s.kind == "sel":
            return self._select(scene, s.value, st), j
        # noun or pronoun: the object already talked about, or the only one
        if st.mentions and st.mentions[0].name:
            return st.mentions[0].name, j
        if len(scene.objects) == 1:
            return scene.objects[0].name, j
        st.penalise(0.3, f"'{s.words}' is ambiguous: {len(scene.objects)} objects")
        return "", j

    @staticmethod
    def _select(scene: SceneInfo, side: str, st: _State) -> str:
        """The object furthest toward ``side`` (left, right, front, back), if clearly so."""
        axis, sign = {"left": (1, 1.0), "right": (1, -1.0), "front": (0, -1.0), "back": (0, 1.0)}[side]
        ranked = sorted(scene.objects, key=lambda o: -sign * o.pos[axis])
        if not ranked:
            return ""
        if len(ranked) > 1 and abs(ranked[0].pos[axis] - ranked[1].pos[axis]) < 0.03:
            st.penalise(0.3, f"no clear {side}most object")
            return ""
        st.penalise(0.95, f"object chosen by position ({side}most)")
        return ranked[0].name

    def _object(self, syms: list[Sym], i: int, scene: SceneInfo, st: _State) -> int:
        name, j = self._resolve_mention(syms, i, scene, st)
        p = st.pending
        if p is None or p.kind == "allway":
            if p is not None:
                st.penalise(0.5, "'all the way' to an object")
                st.pending = None
            if st.mentions and syms[i].kind not in ("pron", "noun") and name != st.mentions[0].name:
                st.penalise(0.3, "two objects without a relation between them")
            elif not st.mentions:
                st.mentions.append(_Mention(name, i))
            return j
        st.pending = None
        if not name:
            st.targets.append(("relation", "next_to", ""))
            return j
        if p.kind == "to":
            st.targets.append(("relation", "to", name))
        elif p.kind in ("toward", "closer"):
            st.targets.append(("relation", "next_to", name))
            st.penalise(0.9, f"'{p.words}' {name} read as next to it")
        elif p.kind == "by":
            st.targets.append(("relation", "next_to", name))
        elif p.kind == "rel":
            st.targets.append(("relation", p.value, name))
        else:
            st.penalise(0.3, f"'{p.words}' an object")
        return j

    def _side(self, syms: list[Sym], i: int, scene: SceneInfo, st: _State) -> int:
        """A run of side words (+ area words, + 'of the table' / 'of <object>')."""
        n = len(syms)
        sides: list[Sym] = []
        j = i
        while j < n and syms[j].kind in ("side", "fill"):
            if syms[j].kind == "side":
                sides.append(syms[j])
            j += 1
        conf = min(s.conf for s in sides)
        if conf < 1.0:
            st.penalise(conf, f"'{' '.join(s.words for s in sides)}' is ambiguous")
        corner = False
        area = False
        while j < n and syms[j].kind in ("area", "table", "fill", "of"):
            if syms[j].kind == "of":
                nxt = j + 1
                while nxt < n and syms[nxt].kind == "fill":
                    nxt += 1
                if nxt < n and syms[nxt].kind in _OBJECT_KINDS:
                    break
            area = True
            corner = corner or syms[j].value == "corner"
            j += 1
        p = st.pending
        st.pending = None
        values = [s.value for s in sides]
        # "<side> of <object>": a relation
        if j < n and syms[j].kind == "of" and len(sides) == 1:
            name, k = self._resolve_mention(syms, _skip_fill(syms, j + 1), scene, st)
            if values[0] == "center":
                st.penalise(0.3, "'the center of' an object")
            st.targets.append(("relation", _SIDE_REL.get(values[0], "next_to"), name))
            return k
        # "the left block": a selector
        if p is None and not area and j < n and syms[j].kind == "noun" and len(sides) == 1:
            if values[0] in ("near", "far"):
                values[0] = _DEPTH[values[0]]
            if values[0] == "center":
                st.penalise(0.3, "'the middle block'")
                name = ""
            else:
                name = self._select(scene, values[0], st)
            return self._object_named(name, j + 1, st)
        # "near the green block", "near the robot"
        if values == ["near"] and not area and j < n and syms[j].kind in _OBJECT_KINDS:
            name, k = self._resolve_mention(syms, j, scene, st)
            st.targets.append(("relation", "next_to", name))
            return k
        if values in (["near"], ["far"]) and j < n and syms[j].kind in ("robot", "away"):
            k = j + 1 if syms[j].kind == "robot" else self._skip_to(syms, j, "robot") + 1
            st.targets.append(("place", _DEPTH[values[0]], ""))
            return k
        lateral = [v for v in values if v in ("left", "right")]
        depth = [_DEPTH[v] for v in values if v in _DEPTH]
        if "center" in values and len(values) > 1:
            st.penalise(0.3, f"'{' '.join(values)}' mixes the center with a side")
        if len(set(lateral)) > 1 or len(set(depth)) > 1:
            st.penalise(0.1, f"contradictory sides '{' '.join(values)}'")
        if lateral and depth:
            far_only = all(v in ("far", "near") for v in values if v not in ("left", "right"))
            if far_only and not corner:
                # "the far left": the extreme left, not a corner; "the near left" is unclear
                if "near" in values:
                    st.penalise(0.6, "'near left/right' is unclear")
                st.targets.append(("place", lateral[0], ""))
            else:
                if p is None and not corner:
                    st.penalise(0.6, f"bare '{' '.join(values)}': a corner or a direction?")
                st.targets.append(("place", _CORNER[(depth[0], lateral[0])], ""))
            return j
        if corner:
            st.penalise(0.3, "a corner needs two sides (front/back and left/right)")
        if values[0] == "center":
            st.targets.append(("place", "center", ""))
            return j
        if depth:
            if p is None and not area:
                st.penalise(0.6, f"bare '{values[0]}': a place or a direction?")
            st.targets.append(("place", depth[0], ""))
            return j
        side = lateral[0]
        place = area or (p is not None and p.kind in ("allway", "rel")) or any(
            v in ("far",) for v in values
        )
        if p is not None and p.kind == "rel" and p.value != "on":
            st.penalise(0.5, f"'{p.words} {side}'")
        if place:
            st.targets.append(("place", side, ""))
        else:
            st.targets.append(("direction", side, ""))
        return j

    @staticmethod
    def _object_named(name: str, j: int, st: _State) -> int:
        if not st.mentions:
            st.mentions.append(_Mention(name, j))
        elif st.mentions[0].name != name:
            st.penalise(0.3, "two objects without a relation between them")
        return j

    # ---------------------------------------------------------------- the decision

    def _decide(self, st: _State, scene: SceneInfo, key: str) -> FastResult:
        verbs = st.verbs
        task = self._task(st)
        if st.refusal:  # an object that is not in the scene: no reading can fix that
            return FastResult(None, max(0.0, min(1.0, st.conf)), tuple(st.reasons), st.refusal, key)
        obj = st.mentions[0].name if st.mentions else ""

        # the target
        targets = list(dict.fromkeys(st.targets))
        tgt: tuple[str, str, str] | None = targets[0] if targets else None
        if len(targets) > 1:
            st.penalise(0.3, f"{len(targets)} different targets")
        if tgt is None and task == "reach" and obj and not st.effector:
            tgt = ("relation", "at", obj)  # "touch the red block"
        if tgt is None:
            st.penalise(0.2, "no target")
        elif tgt[0] == "relation":
            kind, rel, ref = tgt
            if rel == "to":
                rel = "at" if task == "reach" else "next_to"
            if task == "reach":
                if obj and not st.effector and obj != ref:
                    st.penalise(0.3, "reach goes to one object")
                obj = ref
                if rel == "on":
                    rel = "at"  # "hover over the red block": the top of it
            elif rel == "on" and task == "push":
                if "push" in verbs:
                    st.penalise(0.4, "a push cannot put a block on top of another")
                task = "pick_place"
            elif rel == "at":
                rel = "next_to"
            if not ref:
                st.penalise(0.3, "the reference object is unclear")
            tgt = (kind, rel, ref)
        elif task == "reach" and obj and not st.effector:
            st.penalise(0.3, "reach goes to an object or to a place, not both")

        distance: float | None = None
        if st.dist is not None or st.scale != 1.0:
            if tgt is None or tgt[0] != "direction":
                st.penalise(0.5, "a distance without a direction")
            else:
                distance = (st.dist if st.dist is not None else self.distance) * st.scale
        if task in ("push", "pick_place") and not obj:
            st.penalise(0.2, "no object")
        if task == "reach" and st.effector and st.mentions and st.mentions[0].name and (
            tgt is None or tgt[2] != st.mentions[0].name
        ):
            st.penalise(0.3, "the hand and an object both as what moves")
        if task == "reach" and tgt is not None and tgt[0] != "relation":
            obj = ""

        intent = None
        if tgt is not None and task:
            kind, name, ref = tgt
            if kind == "relation":
                target = Target("relation", name, ref=ref)
            elif kind == "direction":
                target = Target("direction", name, distance=distance)
            else:
                target = Target("place", name)
            intent = Intent(task, obj, target)
        conf = max(0.0, min(1.0, st.conf))
        return FastResult(intent, conf, tuple(st.reasons), st.refusal, key)

    @staticmethod
    def _task(st: _State) -> str:
        verbs = st.verbs
        kinds = list(dict.fromkeys(verbs))
        reach = "reach" in kinds or st.effector
        if reach:
            others = [v for v in kinds if v not in ("reach", "move")]
            if others:
                st.penalise(0.3, f"reach mixed with {others[0]}")
            if st.links:
                st.penalise(0.3, "several steps")
            if not verbs:
                st.penalise(0.6, "no verb")
            return "reach"
        if not kinds:
            st.penalise(0.6, "no verb")
            return "push"
        if kinds[0] == "grab" and len(kinds) <= 2 and all(k != "grab" for k in kinds[1:]):
            if st.links > 1 or (len(kinds) == 1 and st.links):
                st.penalise(0.3, "several steps")
            return "pick_place"
        if len(kinds) > 1:
            st.penalise(0.3, f"several verbs: {', '.join(kinds)}")
        if st.links:
            st.penalise(0.3, "several steps")
        return {"push": "push", "move": "push", "place": "pick_place"}.get(kinds[0], "push")
