"""zxcvbn's dictionary matcher, the same matches in the same order, in about half the time, over
dictionaries packed into a quarter of the memory.

zxcvbn 4.5 slices every substring of the password once per dictionary (seven of them, the
user's own words included) and looks each slice up: about 3,700 slices for a 32-character
password, and again for every l33t reading of it and for the reversed password. That was 6% of a
password change's CPU under load (a third of all that is not Argon2). Here each substring is
sliced once and looked up once in all of zxcvbn's own lists together.

zxcvbn holds its 94,000 words as six dicts of str -> int: 11-12 MiB of a worker that has checked
one password, an eighth of its memory. Here they are one UTF-8 string and five arrays
(`PackedWords`, 3 MiB with the rest of zxcvbn), behind read-only mappings (`PackedDictionary`)
that answer as the dicts did, so zxcvbn's other code and its own matcher still work with them.

`load_matching()` (the first password check) packs the lists and imports zxcvbn's matching module
with them; `use_in(matching)` installs the matcher there, whose other matchers (reversed, l33t)
call `dictionary_match` through the module; `library_dictionary_match` keeps the original, which
tests/test_password_policy.py compares it with.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
from array import array
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from zlib import crc32


class PackedWords:
    """Every word of several ranked dictionaries in one UTF-8 string, found through an
    open-addressing table of their CRC-32s (linear probing, at most 3/8 full, so a miss ends after
    about two slots).

    Entry k is `blob[starts[k]:starts[k + 1]]`, from dictionary `lists[k]` at rank `ranks[k]`. The
    words come one at a time and only their bytes are kept, so packing never holds the 94,000 of
    them as objects at once. A word given twice to one dictionary keeps its first entry and its
    last rank, as a dict built from the pairs would; one in two dictionaries has two entries."""

    __slots__ = ("names", "blob", "starts", "hashes", "ranks", "lists", "table", "mask", "longest", "sizes")

    def __init__(self, dictionaries: Mapping[str, Iterable[tuple[str, int]]]):
        self.names = list(dictionaries)
        blob = bytearray()
        starts, hashes, ranks, lists = array("I", [0]), array("I"), array("I"), array("B")
        for index, pairs in enumerate(dictionaries.values()):
            for word, rank in pairs:
                encoded = word.encode("utf-8", "surrogatepass")
                blob += encoded
                starts.append(len(blob))
                hashes.append(crc32(encoded))
                ranks.append(rank)
                lists.append(index)
        self.blob, self.starts, self.hashes, self.ranks, self.lists = bytes(blob), starts, hashes, ranks, lists
        self.longest = max((starts[k + 1] - starts[k] for k in range(len(hashes))), default=0)
        size = 16  # a power of two, at least 8/3 of the words
        while size * 3 < len(hashes) * 8:
            size <<= 1
        self.mask = mask = size - 1
        table = self.table = array("I", bytes(4 * size))  # entry + 1; 0 is an empty slot
        self.sizes = [0] * len(self.names)
        for k, h in enumerate(hashes):
            slot = h & mask
            while seen := table[slot]:
                if hashes[seen - 1] == h and lists[seen - 1] == lists[k] and self._bytes(seen - 1) == self._bytes(k):
                    ranks[seen - 1] = ranks[k]  # the same word again in this dictionary: its last rank
                    break
                slot = (slot + 1) & mask
            else:
                table[slot] = k + 1
                self.sizes[lists[k]] += 1

    def _bytes(self, k: int) -> bytes:
        return self.blob[self.starts[k]:self.starts[k + 1]]

    def entries(self, word: str) -> list[int]:
        """The entries that are this word (none, or one per dictionary holding it)."""
        return [k for _, k in self.lookup((word,))]

    def lookup(self, words: Iterable[str]) -> list[tuple[str, int]]:
        """(word, entry) for every entry that is one of these words: the matcher's one call a
        password reading, over its few hundred substrings."""
        table, hashes, starts, blob, mask, longest = (
            self.table, self.hashes, self.starts, self.blob, self.mask, self.longest)
        found = []
        for word in words:
            if len(word) > longest:  # no shorter in UTF-8 than in characters
                continue
            encoded = word.encode("utf-8", "surrogatepass")
            h = crc32(encoded)
            slot = h & mask
            while k := table[slot]:
                k -= 1
                if hashes[k] == h and blob[starts[k]:starts[k + 1]] == encoded:
                    found.append((word, k))
                slot = (slot + 1) & mask
        return found

    def word(self, k: int) -> str:
        return self._bytes(k).decode("utf-8", "surrogatepass")

    def in_table(self, k: int) -> bool:
        return k in self.entries(self.word(k))


class PackedDictionary(Mapping):
    """One of the dictionaries of a PackedWords, read as zxcvbn reads its dicts: word -> rank."""

    __slots__ = ("packed", "index")

    def __init__(self, packed: PackedWords, index: int):
        self.packed, self.index = packed, index

    def __getitem__(self, word: str) -> int:
        if isinstance(word, str):
            for k in self.packed.entries(word):
                if self.packed.lists[k] == self.index:
                    return self.packed.ranks[k]
        raise KeyError(word)

    def __iter__(self) -> Iterator[str]:
        packed = self.packed
        return (packed.word(k) for k in range(len(packed.lists))
                if packed.lists[k] == self.index and packed.in_table(k))

    def __len__(self) -> int:
        return self.packed.sizes[self.index]

    def __repr__(self) -> str:
        return f"<PackedDictionary {self.packed.names[self.index]!r}: {len(self)} words>"


library_dictionary_match = None


def dictionary_match(password, _ranked_dictionaries=None):
    """The matches zxcvbn's `dictionary_match` returns, ordered as it orders them: by start, end,
    then the dictionaries' order (its sort is stable over a per-dictionary walk)."""
    if _ranked_dictionaries is None:
        from zxcvbn.matching import RANKED_DICTIONARIES as _ranked_dictionaries
    lower = password.lower()
    length = len(lower)
    spans: dict[str, list[tuple[int, int]]] = {}
    for i in range(length):
        for j in range(i, length):
            spans.setdefault(lower[i:j + 1], []).append((i, j))
    found = []

    def add(order, dictionary_name, word, rank):
        for i, j in spans[word]:
            found.append((i, j, order, {
                'pattern': 'dictionary',
                'i': i,
                'j': j,
                'token': password[i:j + 1],
                'matched_word': word,
                'rank': rank,
                'dictionary_name': dictionary_name,
                'reversed': False,
                'l33t': False,
            }))

    packed: dict[PackedWords, dict[int, tuple[int, str]]] = {}
    for order, (dictionary_name, ranked_dict) in enumerate(_ranked_dictionaries.items()):
        if isinstance(ranked_dict, PackedDictionary):  # looked up below, once for all of its pack
            packed.setdefault(ranked_dict.packed, {})[ranked_dict.index] = (order, dictionary_name)
            continue
        for word in ranked_dict.keys() & spans.keys():
            add(order, dictionary_name, word, ranked_dict[word])
    for words, wanted in packed.items():
        for word, k in words.lookup(spans):
            if (where := wanted.get(words.lists[k])) is not None:
                add(where[0], where[1], word, words.ranks[k])
    found.sort(key=lambda item: item[:3])
    return [item[3] for item in found]


def pack(matching) -> None:
    """Replace zxcvbn's dictionaries, in place, by packed ones with the same words and ranks, and
    let go of the lists they were built from (read once at import, never again)."""
    dictionaries = matching.RANKED_DICTIONARIES
    names = [name for name, ranked in dictionaries.items() if isinstance(ranked, dict)]
    if names:  # none when load_matching packed them before zxcvbn was imported
        words = PackedWords({name: dictionaries[name].items() for name in names})
        for index, name in enumerate(names):
            dictionaries[name] = PackedDictionary(words, index)
    matching.FREQUENCY_LISTS.clear()


def use_in(matching) -> None:
    """Replace zxcvbn's matcher with this one and pack its dictionaries (once; the original
    matcher stays in library_dictionary_match)."""
    global library_dictionary_match
    if matching.dictionary_match is not dictionary_match:
        library_dictionary_match = matching.dictionary_match
        matching.dictionary_match = dictionary_match
        pack(matching)


def _joined_word_lists() -> dict[str, str] | None:
    """zxcvbn's word lists as its frequency_lists module writes them, one comma-separated string
    each (`"passwords": "123456,password,...".split(",")`), read from its source without running it;
    None if the module is not written that way."""
    package = importlib.util.find_spec("zxcvbn")  # finds the package without importing it
    try:
        source = Path(package.submodule_search_locations[0], "frequency_lists.py").read_text("utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, TypeError, AttributeError):
        return None
    del source
    for node in tree.body:
        if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["FREQUENCY_LISTS"]
                and isinstance(node.value, ast.Dict)):
            lists = {}
            for key, value in zip(node.value.keys, node.value.values):
                if not (isinstance(key, ast.Constant) and isinstance(key.value, str)
                        and isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                        and value.func.attr == "split" and not value.keywords
                        and isinstance(value.func.value, ast.Constant) and isinstance(value.func.value.value, str)
                        and [getattr(a, "value", None) for a in value.args] == [","]):
                    return None
                lists[key.value] = value.func.value.value
            return lists
    return None


def _ranked(joined: str) -> Iterator[tuple[str, int]]:
    """The words of a comma-separated list with their ranks (1 the first), one at a time."""
    start, rank = 0, 1
    while True:
        end = joined.find(",", start)
        if end < 0:
            yield joined[start:], rank
            return
        yield joined[start:end], rank
        start, rank = end + 1, rank + 1


def load_matching():
    """zxcvbn's matching module with this matcher and packed dictionaries, for a worker's first check.

    Importing zxcvbn builds its six dicts out of 94,000 word objects; packing them afterwards frees
    the words, but what zxcvbn's modules allocate meanwhile stays, scattered through the memory the
    words took, and keeps most of it from going back. So the lists are read from zxcvbn's source
    and packed word by word first; zxcvbn is then imported with empty lists (its frequency_lists
    module stands in with `FREQUENCY_LISTS = {}`, as `pack` leaves it) and given the packed
    dictionaries in its own order. If zxcvbn is already imported, or its source is not as
    expected, its own dictionaries are packed where they are."""
    packed = None
    if "zxcvbn" not in sys.modules and (lists := _joined_word_lists()) is not None:
        packed = PackedWords({name: _ranked(joined) for name, joined in lists.items()})
        del lists
        stand_in = types.ModuleType("zxcvbn.frequency_lists", "zxcvbn's word lists: packed by " + __name__)
        stand_in.FREQUENCY_LISTS = {}
        sys.modules["zxcvbn.frequency_lists"] = stand_in
    from zxcvbn import matching

    if packed is not None:
        for index, name in enumerate(packed.names):
            matching.RANKED_DICTIONARIES[name] = PackedDictionary(packed, index)
    use_in(matching)
    return matching
