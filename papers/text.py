"""Text clean-up and analysis shared by import, storage and matching. Pure Python, no Django.

`clean_title` turns a source's title into what a reader sees. `analyse` turns any text (a title, an abstract, a reader's
interest) into the stemmed tokens matching compares, so both sides of a comparison always go through the same steps.
"""

import re
import unicodedata

import Stemmer

_stemmer = Stemmer.Stemmer("english")

# LaTeX accent commands (\"o, \'e, \`a, \^o, \~n, \c{c}) mapped to the combining mark they stand for.
_ACCENTS = {'"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "c": "\u0327", "=": "\u0304"}
_ACCENT_RE = re.compile(r"""\\(["'`^~=]|c\s)\s*\{?\s*([A-Za-z])\s*\}?""")
_STYLE_COMMAND_RE = re.compile(
    r"\\(?:text(?:bf|it|tt|rm|sc|sf|normal)?|emph|mathrm|mathbf|mathit|mathcal|mathbb|bf|it|em|rm|tt)\b\s*"
)
_ESCAPED_RE = re.compile(r"\\([&%$#_{}])")
_SPACE_RE = re.compile(r"\s+")
_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "lambda": "λ", "mu": "μ", "pi": "π",
    "sigma": "σ", "tau": "τ", "phi": "φ", "psi": "ψ", "omega": "ω", "infty": "∞", "times": "×", "leq": "≤", "geq": "≥",
}  # fmt: skip
_GREEK_RE = re.compile(r"\\(" + "|".join(_GREEK) + r")\b")


def _accent(match):
    mark = _ACCENTS[match.group(1).strip()]
    return unicodedata.normalize("NFC", match.group(2) + mark)


def strip_markup(value):
    """Remove LaTeX-ish markup a title or abstract may carry: $…$, \\textbf{…}, {braces}, \\" accents, escapes."""
    value = _ACCENT_RE.sub(_accent, value)
    value = _GREEK_RE.sub(lambda m: _GREEK[m.group(1)], value)
    value = _STYLE_COMMAND_RE.sub("", value)
    value = _ESCAPED_RE.sub(lambda m: "\0" + m.group(1), value)
    value = value.replace("$", "").replace("{", "").replace("}", "").replace("\\\\", " ")
    value = value.replace("~", " ").replace("``", "\u201c").replace("''", "\u201d").replace("---", "\u2014")
    return value.replace("\0", "")


def clean_title(raw):
    """The title for display: markup removed, whitespace (newlines from arXiv's line wrapping) collapsed."""
    return _SPACE_RE.sub(" ", strip_markup(raw or "")).strip()


def clean_text(raw):
    """An abstract for display: the same clean-up as titles, paragraphs kept as single spaces."""
    return clean_title(raw)


# Function words, plus filler a reader types into an interest box ("making", "papers", "recent"). "out" is kept: it is
# what tells "out-of-distribution" from "distribution".
STOP_WORDS = frozenset(
    """a about above after again against all also am an and any are as at be been before being below between both but
    by can could did do does doing down during each few for from further had has have having here how i if in into is
    it its itself just more most no nor not of off on once only or other our over own same so some such than that the
    their them then there these they this those through to too under until up very via was we were what when where
    which while who whom why will with within without would you your towards toward using based new novel make makes
    making made use uses used paper papers work works study studies research approach approaches method methods recent
    latest stuff things thing""".split()  # noqa: SIM905
)

_TOKEN_RE = re.compile(r"[a-z0-9]+")


def fold(value):
    """Lower-case, accents removed, markup removed: 'Schr\\"odinger' and 'Schrödinger' fold the same."""
    value = strip_markup(value or "")
    value = unicodedata.normalize("NFKD", value)
    value = "".join(ch for ch in value if not unicodedata.combining(ch))
    return value.lower()


_VOWELLESS_PLURAL_RE = re.compile(r"^[b-df-hj-np-tv-z0-9]{2,}s$")
# Words and the punctuation that ends a phrase; hyphens and slashes join ("vision-language", "text/image").
_WORD_OR_BREAK_RE = re.compile(r"[a-z0-9]+|[^\sa-z0-9\-/]")


def _singular_acronym(word):
    # The stemmer keeps the "s" of "gnns" or "llms" (no vowel before it); acronyms' plurals should meet their singular.
    return word[:-1] if _VOWELLESS_PLURAL_RE.match(word) else word


def surface_chunks(value):
    """The words of `value` that analysis keeps, folded but not stemmed, in the runs of `analyse_chunks`."""
    chunks, current = [], []
    for piece in _WORD_OR_BREAK_RE.findall(fold(value)):
        if piece in STOP_WORDS or not (piece.isalnum() and (len(piece) > 1 or piece.isdigit())):
            if current:
                chunks.append(current)
                current = []
            continue
        current.append(piece)
    if current:
        chunks.append(current)
    return chunks


def analyse_chunks(value):
    """Stemmed tokens of `value` in runs that stop words and punctuation do not interrupt.

    "generalization in deep learning" gives [["general"], ["deep", "learn"]]: only words inside one run may form a
    phrase, so a query never asks for the made-up phrase "generalization deep".
    """
    return [stem_words(chunk) for chunk in surface_chunks(value)]


def analyse(value):
    """Stemmed tokens of `value`, stop words removed, order kept (so phrases can be found again)."""
    return [token for chunk in analyse_chunks(value) for token in chunk]


def stem_words(words):
    """The stems of single folded words (`analyse` without its folding and splitting), in one call."""
    return _stemmer.stemWords([_singular_acronym(word) for word in words])


PHRASE_BREAK = "|"


def search_text(value):
    """What `Paper` stores for matching: stemmed tokens, with PHRASE_BREAK where a stop word or punctuation stood."""
    return f" {PHRASE_BREAK} ".join(" ".join(chunk) for chunk in analyse_chunks(value))


# A sentence ends at ., ! or ? before a space, unless the word it ends is a usual abbreviation ("e.g. the", "et al. (").
_SENTENCE_END_RE = re.compile(r"(?<=[^\s.!?]{2})[.!?](?=\s)")
_ABBREVIATIONS = {"e.g", "i.e", "al", "cf", "vs", "fig", "figs", "eq", "eqs", "sec", "ref", "approx", "resp", "no"}
_SNIPPET_TAIL = " ,;:-–—(/“\"'"


def snippet(value, length=280):
    """`value` on one line, at most `length` characters: whole if it fits; else cut after its last sentence that ends
    past half of `length`; else between words, with "…" (which counts in `length`). Never in the middle of a word."""
    value = " ".join(value.split())
    if len(value) <= length:
        return value
    ends = [
        match.end()
        for match in _SENTENCE_END_RE.finditer(value, 0, length)
        if value[: match.start()].rsplit(" ", 1)[-1].casefold() not in _ABBREVIATIONS
    ]
    if ends and ends[-1] >= length // 2:
        return value[: ends[-1]]
    return cut_words(value, length)


def cut_words(value, length):
    """`value` if it has at most `length` characters, else cut between words with "…" (counted in `length`)."""
    if len(value) <= length:
        return value
    cut = value[: length - 1]  # "…" takes the last place
    if value[length - 1] != " " and " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(_SNIPPET_TAIL) + "…"
