"""zxcvbn's dictionary matcher, the same matches in the same order, in about half the time.

zxcvbn 4.5 slices every substring of the password once per dictionary (seven of them, the
user's own words included) and looks each slice up: about 3,700 slices for a 32-character
password, and again for every l33t reading of it and for the reversed password. That was 6% of a
password change's CPU under load (a third of all that is not Argon2). Here each substring is
sliced once, and each dictionary is intersected with the set of substrings in C, which walks the
few hundred substrings rather than the dictionary. No table is built or kept beyond the call.

`use_in(matching)` installs it in zxcvbn's matching module, whose other matchers (reversed,
l33t) call `dictionary_match` through the module; `library_dictionary_match` keeps the original,
which tests/test_password_policy.py compares it with. It also makes the dictionaries smaller
(`compact`).
"""

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
    for order, (dictionary_name, ranked_dict) in enumerate(_ranked_dictionaries.items()):
        for word in ranked_dict.keys() & spans.keys():
            rank = ranked_dict[word]
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
    found.sort(key=lambda item: item[:3])
    return [item[3] for item in found]


def compact(matching) -> None:
    """About 2 MiB less for a worker to hold: zxcvbn keeps each of its 94,000 words twice over
    (the ranked dictionaries and the lists they were built from, never read again) and gives
    each dictionary its own int for every rank. The lists are emptied and equal ranks share one
    int; the dictionaries keep the same words with the same ranks."""
    dictionaries = matching.RANKED_DICTIONARIES
    ranks = list(range(max((max(d.values(), default=0) for d in dictionaries.values()), default=0) + 1))
    for ranked_dict in dictionaries.values():
        for word, rank in ranked_dict.items():
            ranked_dict[word] = ranks[rank]
    matching.FREQUENCY_LISTS.clear()


def use_in(matching) -> None:
    """Replace zxcvbn's matcher with this one and compact its dictionaries (once; the original
    matcher stays in library_dictionary_match)."""
    global library_dictionary_match
    if matching.dictionary_match is not dictionary_match:
        library_dictionary_match = matching.dictionary_match
        matching.dictionary_match = dictionary_match
        compact(matching)
