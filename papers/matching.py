"""Rank papers for a curated topic or a reader's free-text interest.

Lexical, in Python, over an in-memory index of a pool of papers, so SQLite and PostgreSQL give the same ranking, and a
pool is indexed once and then scored for every topic and keyword set of a run.

How a paper scores for one query text (an interest, a topic's name or one of its aliases):

* Text on both sides goes through `papers.text.analyse` (case, accents and markup folded, stop words dropped,
  stemmed), and known phrases and abbreviations are mapped to concept terms (`papers.vocabulary`), so "GNN" and
  "graph neural networks" meet.
* The query becomes slots: one per concept it names, one per remaining word, and one per pair of adjacent remaining
  words (the phrase: "domain generalization" must be said together, not just both words somewhere).
* A query word that no paper of the pool uses, and that one letter away is a word several papers use, is read as that
  word ("self drving cars" as "self driving cars"; `Index.respelled`): only a word of RESPELL_MIN_LENGTH letters or
  more that is no known word, so a real term the pool lacks ("Turing", "LoRa") is left as written.
* Each slot weighs its inverse document frequency over the pool, so a word every paper of the day says counts for
  little. A slot's strength in a paper is its saturated term frequency, the title counting TITLE_WEIGHT times the
  abstract: tfw / (tfw + SATURATION), which is below 1.
* The score is the weighted mean of slot strengths: between 0 and 1, comparable across queries, so one threshold
  (settings.MATCH_MIN_SCORE) can say "matches".

A topic is scored as its best alternative (name or alias), lifted a little by its description and other aliases.

Meaning counts too, with settings.MATCH_SEMANTIC_WEIGHT (w) above 0, the default, in two passes:

* first = (1 - w) × lexical + w × semantic, where semantic is the mean cosine of the paper's TOP_PASSAGES passages
  (`papers.embeddings.passages`: its title, and its abstract a few sentences at a time) closest to the query's texts,
  0 when negative;
* score = (1 - a) × first + a × best × like, a = NEIGHBOUR_WEIGHT: like is the cosine of the paper's weighted terms
  with the centroid of the NEIGHBOUR_SEEDS best papers of the first pass (pseudo-relevance feedback), and best the
  best first score, so that the neighbours of poor matches count for little.

Both stay between 0 and 1. Abbreviations and exact phrases still count; meaning and likeness reorder the papers and
lift those that say more of what the reader meant or read like the best matches. At the shipped values a paper that
shares no word with the query does not match on them alone (docs/matching.md, Quality). At w = 0 nothing of the
embeddings is loaded, likeness does not count either, and scores are exactly the lexical ones.

What "matches" (`Index.matches`: a topic page, the topic admin preview, a digest) is calibrated on the development
part of the labelled set (docs/matching.md): a score of at least settings.MATCH_MIN_SCORE, and at least
settings.MATCH_RELATIVE_SCORE times the best score any paper of the pool gets for the same query, so a topic's weak
namesakes ("quantization" of speech units for "Efficient inference") drop out when the pool has real matches.

Editors correct a topic with examples (papers.models.TopicExample, `Query.from_topic(topic, examples)`): a paper
marked "not this topic" never matches it, one marked "belongs here" always does (a score of 1). With w above 0,
examples also reach the papers most like them: a positive example counts as one more text of the topic (its
similarity to a paper measured against the pool, `Index._example_similarity`), and a paper much closer to a negative
example than to the topic's texts and positive examples is pushed down (NEGATIVE_PUSH). At w = 0 only the verdicts on
the papers themselves count.

`Index.explain` says in a few words why a paper matched: the query's words it shares, the query text or the example it
is close in meaning to, the best match it is like, or an editor's verdict.
"""

import functools
import heapq
import json
import math
import re
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path

from papers import text
from papers.vocabulary import CONCEPTS, RELATED

TITLE_WEIGHT = 5.0
SATURATION = 1.2
# A concept slot partly met by its words alone ("graph networks" for "graph neural networks") or by words related to
# it (vocabulary.RELATED) earns at most this share of a full match.
PARTIAL_CONCEPT = 0.6
# How much a topic's description and its other aliases can add on top of its best alternative.
DESCRIPTION_LIFT = 0.3
ALIAS_LIFT = 0.2
# A paper's score is multiplied by 1 - NEGATIVE_PUSH × (how much closer it is to the nearest negative example than to
# the topic's texts and positive examples), at least 0: a gap of 0.25 halves it, one of 0.5 takes it to 0.
NEGATIVE_PUSH = 2.0
# How much of an example's title "why this paper" quotes.
EXAMPLE_TITLE_WIDTH = 60
# Meaning is measured against a paper's passages (papers.embeddings.passages): the mean of its TOP_PASSAGES best.
TOP_PASSAGES = 2
# Papers like the best matches (pseudo-relevance feedback): the NEIGHBOUR_SEEDS best-scoring papers of a first pass
# (and an editor's "belongs here"), each weighed by its score, make a centroid of their weighted terms; a paper's cosine
# with it, times the best first score, is NEIGHBOUR_WEIGHT of its final score. Chosen on the development part.
NEIGHBOUR_SEEDS = 8
NEIGHBOUR_WEIGHT = 0.4

# Respelling a reader's word that no paper of the pool uses ("drving"): only words this long (shorter ones are too often
# a real term: "LoRa"), that are no word of DICTIONARY, and only into a word at least RESPELL_MIN_PAPERS papers use.
# Nor longer words than RESPELL_MAX_LENGTH: a search costs about 55 candidates a letter, once per word and pool.
RESPELL_MIN_LENGTH = 6
RESPELL_MAX_LENGTH = 24
RESPELL_MIN_PAPERS = 2
# Known words: the whole words of the embedding model's vocabulary (papers/embedding_model/tokenizer.json), read from
# the file, so respelling needs neither the model nor Django.
DICTIONARY = Path(__file__).resolve().parent / "embedding_model" / "tokenizer.json"
_LETTERS = "abcdefghijklmnopqrstuvwxyz"

# What separates alternatives in a reader's interest or a topic's name: "GNN, graph transformers", "A and B".
_SEPARATORS_RE = re.compile(r"[,;\n|&]+|\s+(?:and|or)\s+", re.IGNORECASE)


class _Vocabulary:
    def __init__(self, concepts):
        self.forms = {}
        self.broader = {}
        for key, (forms, broader) in concepts.items():
            self.broader[key] = tuple(broader)
            for form in forms:
                stems = tuple(text.analyse(form))
                if stems:
                    self.forms.setdefault(stems, set()).add(key)
        self.longest = max(len(stems) for stems in self.forms)

    def spans(self, tokens):
        """(start, end, concept keys) for every known form in tokens, nested ones included."""
        found = []
        for start in range(len(tokens)):
            for length in range(min(self.longest, len(tokens) - start), 0, -1):
                keys = self.forms.get(tuple(tokens[start : start + length]))
                if keys:
                    found.append((start, start + length, sorted(keys)))
        return found

    def with_broader(self, keys):
        result, todo = set(), list(keys)
        while todo:
            key = todo.pop()
            if key not in result:
                result.add(key)
                todo.extend(self.broader.get(key, ()))
        return result


VOCABULARY = _Vocabulary(CONCEPTS)


def concept_term(key):
    # Stems are [a-z0-9]+, so an underscore prefix can never collide with a word.
    return "_" + key


def _field_terms(tokens):
    terms = Counter(tokens)
    covered = defaultdict(set)  # concept term -> positions already counted for it
    # Longest spans first: "automatic speech recognition" is one mention of ASR, not also one of "speech recognition".
    for start, end, keys in sorted(VOCABULARY.spans(tokens), key=lambda span: (span[0] - span[1], span[0])):
        positions = set(range(start, end))
        for key in VOCABULARY.with_broader(keys):
            term = concept_term(key)
            if not positions & covered[term]:
                terms[term] += 1
                covered[term] |= positions
    return terms


@dataclass(frozen=True)
class Match:
    paper: object
    score: float

    @property
    def arxiv_id(self):
        return self.paper.arxiv_id


@dataclass
class _Slot:
    terms: tuple  # any of these terms meets the slot
    fallback: tuple = ()  # words that together meet it partly (a concept's spelled-out words)
    related: tuple = ()  # stems or stem pairs, any of which meets it partly
    bigram: tuple | None = None  # a phrase: two stems that must stand side by side
    label: str = ""  # the query's own words for it, for "why this paper"
    concept: bool = False  # a concept of the vocabulary: a paper may meet it in other words


def _related_terms(keys):
    found = []
    for key in keys:
        for phrase in RELATED.get(key, ()):
            stems = tuple(text.analyse(phrase))
            if len(stems) in (1, 2) and stems not in found:
                found.append(stems)
    return tuple(found)


_WORD_RE = re.compile(r"[^\W_]+")


def _as_written(value, words):
    """The stretch of `value` that analysis turned into `words` (its folded, unstemmed words), as the reader wrote it:
    'Mixture of Experts' for ["mixture", "experts"], with at most two stop words between two of them; the folded
    words when it cannot be found (accents, markup between them)."""
    value = value or ""
    tokens = [(match.group().lower(), match.start(), match.end()) for match in _WORD_RE.finditer(value)]
    for first, (token, start, end) in enumerate(tokens):
        if token != words[0]:
            continue
        found, skipped = 1, 0
        for token, _start, token_end in tokens[first + 1 :]:
            if found == len(words):
                break
            if token == words[found]:
                found, skipped, end = found + 1, 0, token_end
            elif token in text.STOP_WORDS and skipped < 2:
                skipped += 1
            else:
                break
        if found == len(words):
            return " ".join(value[start:end].split())
    return " ".join(words)


@dataclass
class QueryText:
    slots: list = field(default_factory=list)
    source: str = ""  # the words it was parsed from, as written

    @classmethod
    def parse(cls, value):
        chunks = text.analyse_chunks(value)
        tokens = [token for chunk in chunks for token in chunk]
        words = [word for chunk in text.surface_chunks(value) for word in chunk]
        chunk_of = [number for number, chunk in enumerate(chunks) for _token in chunk]
        slots, covered = [], set()
        # Longest spans first; a span inside one already taken is part of it, not a slot of its own.
        for start, end, keys in sorted(VOCABULARY.spans(tokens), key=lambda span: (span[0] - span[1], span[0])):
            if any(position in covered for position in range(start, end)):
                continue
            covered.update(range(start, end))
            slot = _Slot(
                terms=tuple(concept_term(key) for key in keys),
                fallback=tuple(dict.fromkeys(tokens[start:end])) if end - start > 1 else (),
                related=_related_terms(keys),
                label=_as_written(value, words[start:end]),
                concept=True,
            )
            slots.append((start, slot))
        for position, token in enumerate(tokens):
            if position in covered:
                continue
            slots.append((position, _Slot(terms=(token,), label=words[position])))
            before = position - 1
            if (
                before >= 0
                and before not in covered
                and chunk_of[before] == chunk_of[position]
                and tokens[before] != token
            ):
                label = _as_written(value, words[before : position + 1])
                slots.append((position - 0.5, _Slot(terms=(), bigram=(tokens[before], token), label=label)))
        slots.sort(key=lambda item: item[0])
        unique, seen = [], set()
        for _position, slot in slots:
            key = (slot.terms, slot.bigram)
            if key not in seen:
                seen.add(key)
                unique.append(slot)
        return cls(unique, value or "")

    def __bool__(self):
        return bool(self.slots)


@dataclass(frozen=True)
class Example:
    """An editor's verdict on one paper for a topic (papers.models.TopicExample), as matching reads it."""

    paper: object  # paper-like: arxiv_id, title, abstract (and embedding, embedding_key when stored)
    belongs: bool  # True: "belongs here"; False: "not this topic"


@dataclass
class Query:
    """What to rank papers for: a reader's interest or a curated topic."""

    alternatives: list  # QueryText; the best one counts
    secondary: list = field(default_factory=list)  # QueryText; a topic's description, lifts a little
    label: str = ""
    texts: list = field(default_factory=list)  # the words as written, for the embeddings
    examples: tuple = ()  # Example; a topic's editors' verdicts
    separate: bool = False  # alternatives are separate subjects, each with its own bar (a reader's words)

    @property
    def verdicts(self):
        """{arXiv id: belongs} of the examples."""
        return {example.paper.arxiv_id: example.belongs for example in self.examples}

    @classmethod
    def from_interest(cls, interest):
        """A reader's words. Commas, semicolons and new lines separate alternatives: "GNN, graph transformers"."""
        raw = _SEPARATORS_RE.split(interest or "")
        parts = [QueryText.parse(part) for part in raw]
        return cls([part for part in parts if part], label=interest, texts=[interest or "", *raw], separate=True)

    @classmethod
    def from_keywords(cls, keywords):
        parts = [QueryText.parse(keyword) for keyword in keywords]
        parts = [part for part in parts if part]
        return cls(parts, label=", ".join(keywords), texts=list(keywords), separate=True)

    @classmethod
    def from_topic(cls, topic, examples=()):
        """A curated topic: its name and aliases, lifted by its description; `examples` (Example) its editors'
        verdicts (topic_examples loads them)."""
        names = [*_SEPARATORS_RE.split(topic.name), *topic.get_alias_list()]
        parts = [QueryText.parse(name) for name in names]
        description = QueryText.parse(topic.description)
        return cls(
            [part for part in parts if part],
            [description] if description else [],
            label=topic.name,
            texts=list(dict.fromkeys([topic.name, *names])),
            examples=tuple(examples),
        )

    def __bool__(self):
        return bool(self.alternatives)


class Index:
    """An inverted index over a pool of papers. Build once per pool; score any number of queries against it."""

    def __init__(self, papers, *, semantic_weight=None, embeddings=None):
        """semantic_weight: the embeddings' share of the score; settings.MATCH_SEMANTIC_WEIGHT when None.
        embeddings: which model ("static" or "transformer"); settings.MATCH_EMBEDDINGS when None."""
        self.papers = list(papers)
        self.postings = defaultdict(dict)  # term -> {doc: weighted term frequency}
        self.sequences = []  # per doc: (title stems, abstract stems), for phrases
        for doc, paper in enumerate(self.papers):
            # Phrase breaks stay in the sequences (no phrase spans them) and out of the terms.
            title = paper.search_title.split()
            abstract = paper.search_abstract.split()
            self.sequences.append((title, abstract))
            weighted = Counter()
            for term, count in _field_terms([t for t in title if t != text.PHRASE_BREAK]).items():
                weighted[term] += TITLE_WEIGHT * count
            for term, count in _field_terms([t for t in abstract if t != text.PHRASE_BREAK]).items():
                weighted[term] += count
            for term, tfw in weighted.items():
                self.postings[term][doc] = tfw
        self.size = len(self.papers)
        self._phrase_cache = {}
        self._slot_cache = {}
        self._semantic_cache = {}
        if semantic_weight is None or embeddings is None:
            # Django's settings only when not given: tests and benches build an Index without Django.
            from django.conf import settings

            semantic_weight = settings.MATCH_SEMANTIC_WEIGHT if semantic_weight is None else semantic_weight
            embeddings = settings.MATCH_EMBEDDINGS if embeddings is None else embeddings
        self.semantic_weight = semantic_weight
        self.embeddings = embeddings
        self._rows = None
        self._docs = None
        self._example_vectors = {}
        self._terms = None
        self._neighbour_cache = {}
        self._respellings = {}

    @property
    def rows(self):
        """The papers' embeddings (papers.embeddings.PaperVectors: whole papers and passages, in doc order), loaded or
        computed once, the first time needed."""
        if self._rows is None:
            # Imported here: with a weight of 0 (and no feedback model) no embedding is ever loaded.
            from papers import embeddings

            self._rows = embeddings.paper_rows(self.papers, self.embeddings)
        return self._rows

    @property
    def vectors(self):
        """The papers' whole embeddings (normalised rows, in doc order)."""
        return self.rows.whole

    def passage_similarity(self, vector):
        """Per doc, the mean cosine of its TOP_PASSAGES passages closest to `vector` (all of them when it has fewer)."""
        import numpy as np

        rows = self.rows
        cosines = rows.passages @ vector
        starts, counts = rows.starts[:-1], np.diff(rows.starts)
        best = np.maximum.reduceat(cosines, starts)
        total, taken = best.copy(), np.ones(len(starts))
        rest = cosines.copy()
        for _ in range(TOP_PASSAGES - 1):
            # Take out each doc's best passage (one of them, on a tie) and add the next best.
            rest[starts + _first_at(rest, best, starts, counts)] = -np.inf
            best = np.maximum.reduceat(rest, starts)
            more = counts > taken
            total[more] += best[more]
            taken[more] += 1
        return total / taken

    def query_vector(self, value):
        from papers import embeddings

        return embeddings.query_vector(value, self.embeddings)

    def _arxiv_order(self, doc):
        return self.papers[doc].arxiv_id

    def doc_of(self, arxiv_id):
        """The doc number of the paper with this arXiv id, or None when it is not in the pool."""
        if self._docs is None:
            self._docs = {paper.arxiv_id: doc for doc, paper in enumerate(self.papers)}
        return self._docs.get(arxiv_id)

    def _semantic(self, query):
        """(best similarity per doc, why per doc) over the query's texts and its positive examples, similarities in
        [0, 1]; (None, None) when there is nothing to compare. A why is ('close in meaning to “<text>”', False) or
        ('close to “<example's title>”', True)."""
        import numpy as np

        texts = tuple(dict.fromkeys(value.strip() for value in query.texts if value and value.strip()))
        positive = tuple(example.paper for example in query.examples if example.belongs)
        key = (texts, tuple(paper.arxiv_id for paper in positive))
        if (not texts and not positive) or not self.size:
            return None, None
        if key not in self._semantic_cache:
            rows, reasons = [], []
            self.rows  # noqa: B018 - the pool's embeddings first: one batch, before the query's
            for value in texts:
                rows.append(self.passage_similarity(self.query_vector(value)).clip(0.0, 1.0))
                reasons.append((f"close in meaning to “{value}”", False))
            if positive:
                rows.extend(self._example_similarity(positive))
                reasons.extend((f"close to “{_shorten(paper.title)}”", True) for paper in positive)
            similarities = np.stack(rows)
            best = similarities.argmax(axis=0)
            self._semantic_cache[key] = (similarities.max(axis=0), [reasons[i] for i in best])
        return self._semantic_cache[key]

    def _example_similarity(self, papers):
        """One row per example paper: its similarity to each doc, measured against the pool, in [0, 1].

        Two papers of the field are far closer in embedding space than a short query text is to a paper (with the
        static model, half the pairs of papers in the labelled set are above 0.68, and a topic's name is about 0.45
        from the papers it matches). So an example's cosine with a paper counts from the example's mean cosine over
        the pool (0) to an identical paper (1): only the papers nearest the example get a similarity a topic's texts
        would give."""
        import numpy as np

        rows = []
        for vector in self._vectors_of(papers):
            cosines = self.vectors @ vector
            baseline = float(cosines.mean())
            rows.append(((cosines - baseline) / max(1.0 - baseline, 1e-6)).clip(0.0, 1.0))
        return np.stack(rows)

    def _vectors_of(self, papers):
        """The embeddings of example papers: the pool's own row for a paper in the pool, else stored or computed."""
        from papers import embeddings

        missing = [
            paper
            for paper in papers
            if paper.arxiv_id not in self._example_vectors and self.doc_of(paper.arxiv_id) is None
        ]
        if missing:
            for paper, vector in zip(missing, embeddings.paper_vectors(missing, self.embeddings), strict=True):
                self._example_vectors[paper.arxiv_id] = vector
        vectors = []
        for paper in papers:
            doc = self.doc_of(paper.arxiv_id)
            vectors.append(self.vectors[doc] if doc is not None else self._example_vectors[paper.arxiv_id])
        return vectors

    def __len__(self):
        return self.size

    def idf(self, df):
        return math.log(1 + (self.size - df + 0.5) / (df + 0.5))

    def _phrase_postings(self, bigram):
        if bigram not in self._phrase_cache:
            first, second = bigram
            found = {}
            candidates = self.postings.get(first, {}).keys() & self.postings.get(second, {}).keys()
            for doc in sorted(candidates):
                title, abstract = self.sequences[doc]
                tfw = TITLE_WEIGHT * _count_pairs(title, first, second) + _count_pairs(abstract, first, second)
                if tfw:
                    found[doc] = tfw
            self._phrase_cache[bigram] = found
        return self._phrase_cache[bigram]

    def _slot_strengths(self, slot):
        """(weight, {doc: strength}) for one slot, computed once per Index."""
        key = (slot.terms, slot.fallback, slot.related, slot.bigram)
        if key not in self._slot_cache:
            self._slot_cache[key] = self._compute_slot_strengths(slot)
        return self._slot_cache[key]

    def _compute_slot_strengths(self, slot):
        if slot.bigram is not None:
            postings = [self._phrase_postings(slot.bigram)]
        else:
            postings = [self.postings.get(term, {}) for term in slot.terms]
        weight = max(self.idf(len(p)) for p in postings)
        strengths = {}
        for posting in postings:
            for doc, tfw in posting.items():
                strength = tfw / (tfw + SATURATION)
                if strength > strengths.get(doc, 0.0):
                    strengths[doc] = strength
        partial = defaultdict(float)
        for word in slot.fallback:
            for doc, tfw in self.postings.get(word, {}).items():
                partial[doc] += tfw / (tfw + SATURATION) / len(slot.fallback)
        for stems in slot.related:
            posting = self._phrase_postings(stems) if len(stems) == 2 else self.postings.get(stems[0], {})
            for doc, tfw in posting.items():
                partial[doc] = max(partial[doc], tfw / (tfw + SATURATION))
        for doc, value in partial.items():
            # Either kind of evidence raises the strength; neither can reach a full match on its own.
            full = strengths.get(doc, 0.0)
            strengths[doc] = 1 - (1 - full) * (1 - PARTIAL_CONCEPT * value)
        return weight, strengths

    def score_text(self, query_text):
        """{doc: score in [0, 1)} for one query text."""
        scores = defaultdict(float)
        total = 0.0
        for slot in query_text.slots:
            weight, strengths = self._slot_strengths(slot)
            total += weight
            for doc, strength in strengths.items():
                scores[doc] += weight * strength
        if total == 0:
            return {}
        return {doc: value / total for doc, value in scores.items()}

    def respelled(self, query):
        """`query` with the misspelt words of its alternatives read as the words the pool's papers use ("self drving
        cars" as "self driving cars"), and the respelled texts added to those it is embedded from; `query` itself when
        no word is respelled. A word is respelled when it is at least RESPELL_MIN_LENGTH letters, no paper of the pool
        uses it, it is no known word (DICTIONARY), and one letter away is a word that at least RESPELL_MIN_PAPERS papers
        use (the one most of them use)."""
        alternatives, respelled_texts = [], []
        for alternative in query.alternatives:
            source = _WORD_RE.sub(lambda match: self._respelling(match.group()) or match.group(), alternative.source)
            respelled = QueryText.parse(source) if source != alternative.source else None
            alternatives.append(respelled or alternative)
            if respelled:
                respelled_texts.append(source)
        if not respelled_texts:
            return query
        texts = list(dict.fromkeys([*query.texts, *respelled_texts]))
        return replace(query, alternatives=alternatives, texts=texts)

    def _respelling(self, word):
        """The word the pool's papers use for `word`, or None (`respelled`), found once per Index."""
        word = word.lower()
        if word not in self._respellings:
            self._respellings[word] = self._find_respelling(word)
        return self._respellings[word]

    def _find_respelling(self, word):
        if not RESPELL_MIN_LENGTH <= len(word) <= RESPELL_MAX_LENGTH or not (word.isascii() and word.isalpha()):
            return None
        if word in _known_words():
            return None
        stems = text.analyse(word)
        if len(stems) != 1 or stems[0] in self.postings or tuple(stems) in VOCABULARY.forms:
            return None
        best, most = None, RESPELL_MIN_PAPERS - 1
        candidates = sorted(candidate for candidate in _one_edit_away(word) if candidate not in text.STOP_WORDS)
        for candidate, stem in zip(candidates, text.stem_words(candidates), strict=True):
            papers = len(self.postings.get(stem, ()))
            if papers > most:
                best, most = candidate, papers
        return best

    def score(self, query):
        """{doc: score in [0, 1]} for a Query."""
        return self._score(self.respelled(query))

    def _score(self, query):
        """`score` for a query already respelled."""
        results = self._first_pass(query)
        if self.semantic_weight > 0:
            results = self._with_neighbours(query, results)
        for arxiv_id, belongs in query.verdicts.items():
            doc = self.doc_of(arxiv_id)
            if doc is None:
                continue
            if belongs:
                results[doc] = 1.0
            else:
                results.pop(doc, None)
        return results

    def _first_pass(self, query):
        """{doc: score} on the query's words and meaning, before papers like the best matches count."""
        results = self.lexical_score(query)
        if self.semantic_weight > 0:
            semantic, _reasons = self._semantic(query)
            if semantic is not None:
                weight = self.semantic_weight
                results = {
                    doc: (1 - weight) * results.get(doc, 0.0) + weight * float(semantic[doc])
                    for doc in results.keys() | set(semantic.nonzero()[0].tolist())
                }
                results = self._push_from_negatives(query, results, semantic)
        return results

    def _push_from_negatives(self, query, results, semantic):
        """Scores multiplied down for papers much closer to a "not this topic" example than to the topic (its texts
        and positive examples, `semantic`)."""
        negative = [example.paper for example in query.examples if not example.belongs]
        if not negative or not results:
            return results
        closest = self._example_similarity(negative).max(axis=0)
        keep = (1.0 - NEGATIVE_PUSH * (closest - semantic)).clip(0.0, 1.0)
        return {doc: value * float(keep[doc]) for doc, value in results.items()}

    def _with_neighbours(self, query, results):
        """Scores that count, for NEIGHBOUR_WEIGHT, how like the best matches of `results` (the first pass) a paper
        is (`_neighbours`)."""
        like, _seeds = self._neighbours(query, results)
        if like is None:
            return results
        weight = NEIGHBOUR_WEIGHT
        return {
            doc: (1 - weight) * results.get(doc, 0.0) + weight * float(like[doc])
            for doc in results.keys() | set(like.nonzero()[0].tolist())
        }

    def _neighbours(self, query, results=None):
        """(like, seeds): per doc, the cosine of its weighted terms with the centroid of the seeds, times the best
        seed's weight, in [0, 1]; and the seeds' docs. The seeds are the editor's "belongs here" papers (weight 1) and
        the NEIGHBOUR_SEEDS best papers of the first pass (`results`, computed when None; weighed by their score; a
        "not this topic" is never one). (None, []) when there are none."""
        key = _query_key(query)
        if key not in self._neighbour_cache:
            if results is None:
                results = self._first_pass(query)
            verdicts = {self.doc_of(arxiv_id): belongs for arxiv_id, belongs in query.verdicts.items()}
            verdicts.pop(None, None)
            # An editor's "belongs here" is a seed of weight 1, before the first pass's best.
            accepted = sorted((doc for doc, belongs in verdicts.items() if belongs), key=self._arxiv_order)
            best = heapq.nsmallest(
                NEIGHBOUR_SEEDS,
                (doc for doc, score in results.items() if score > 0 and doc not in verdicts),
                key=lambda doc: (-results[doc], self._arxiv_order(doc)),
            )
            seeds = accepted + best
            weights = [1.0] * len(accepted) + [results[doc] for doc in best]
            like = None
            if seeds:
                # Only as good as the best match: when nothing in the pool is about the query, its best papers'
                # neighbours are not either.
                like = self.terms.like(seeds, weights) * min(max(weights), 1.0)
            self._neighbour_cache[key] = (like, seeds)
        return self._neighbour_cache[key]

    @property
    def terms(self):
        """The papers' weighted terms (_TermMatrix), built the first time papers like the best matches are asked
        for."""
        if self._terms is None:
            self._terms = _TermMatrix(self)
        return self._terms

    def lexical_score(self, query):
        """{doc: score in [0, 1)} for a Query, on words alone."""
        per_alternative = [self.score_text(alternative) for alternative in query.alternatives]
        per_secondary = [self.score_text(secondary) for secondary in query.secondary]
        docs = set().union(*per_alternative) if per_alternative else set()
        results = {}
        for doc in docs:
            values = sorted((scores.get(doc, 0.0) for scores in per_alternative), reverse=True)
            best, others = values[0], values[1:]
            lift = ALIAS_LIFT * (sum(others) / len(others) if others else 0.0)
            if per_secondary:
                lift += DESCRIPTION_LIFT * max(scores.get(doc, 0.0) for scores in per_secondary)
            results[doc] = best + (1 - best) * min(lift, 1.0)
        return results

    def explain(self, query, doc):
        """Why `doc` matches `query`, in a few words: 'mentions “kv cache”, “compression”' (the query's words it
        shares, strongest first), or 'close in meaning to “…”' when meaning, not shared words, carries the score.
        A topic's examples add 'close to “<a positive example's title>”' for a paper nearer that example than the
        topic's texts, and an editor's verdict on the paper itself is said as such."""
        if doc is None or not 0 <= doc < self.size:
            # A negative number would quietly explain another paper; doc_of() gives None for a paper not in the pool.
            raise ValueError(f"No paper {doc!r} in this pool of {self.size}.")
        query = self.respelled(query)
        verdict = query.verdicts.get(self.papers[doc].arxiv_id)
        if verdict is not None:
            return "marked as belonging here by an editor" if verdict else "marked as not this topic by an editor"
        lexical, shared = 0.0, []
        for alternative in query.alternatives:
            contributions, total = [], 0.0
            for slot in alternative.slots:
                weight, strengths = self._slot_strengths(slot)
                total += weight
                if strengths.get(doc, 0.0) > 0:
                    contributions.append((weight * strengths[doc], slot))
            value = sum(amount for amount, _slot in contributions) / total if total else 0.0
            if value > lexical:
                lexical, shared = value, contributions
        near_example = ""
        if self.semantic_weight > 0:
            # Each part's share of the score: words, meaning, and papers like the best matches.
            weight, like_weight = self.semantic_weight, NEIGHBOUR_WEIGHT
            words = (1 - like_weight) * (1 - weight) * lexical
            semantic, reasons = self._semantic(query)
            meaning = (1 - like_weight) * weight * semantic[doc] if semantic is not None else 0.0
            like, seeds = self._neighbours(query)
            others = [seed for seed in seeds if seed != doc]
            alike = like_weight * like[doc] if like is not None and others else 0.0
            if alike > max(words, meaning):
                # The first in arXiv order on a tie, as every database orders the pool differently.
                nearest = max(sorted(others, key=self._arxiv_order), key=lambda seed: self.terms.cosine(doc, seed))
                return f"like a top match, “{_shorten(self.papers[nearest].title)}”"
            if semantic is not None:
                reason, by_example = reasons[doc]
                if meaning > words:
                    return reason
                if by_example and semantic[doc] > 0:
                    near_example = reason  # the example lifted it, though its words carry it
        chosen = []  # (label, concept), strongest first
        for _amount, slot in sorted(shared, key=lambda item: -item[0]):
            label = slot.label
            # A phrase met covers its words: "kv cache" says enough without "cache", whichever came first.
            if not label or any(_contains(other, label) for other, _concept in chosen):
                continue
            chosen = [(other, concept) for other, concept in chosen if not _contains(label, other)]
            chosen.append((label, slot.concept))
        chosen = chosen[:2]
        # A concept may be met in other words ("graph attention networks" for "GNN"): the paper is about it.
        about = [f"“{label}”" for label, concept in chosen if concept]
        mentions = [f"“{label}”" for label, concept in chosen if not concept]
        parts = [f"about {', '.join(about)}" if about else "", f"mentions {', '.join(mentions)}" if mentions else ""]
        return "; ".join(part for part in (*parts, near_example) if part)

    def matches(self, query, *, min_score=None, relative=None):
        """{doc: score} of the papers that match `query` (see the module's docstring); the cut-offs default to
        settings.MATCH_MIN_SCORE and settings.MATCH_RELATIVE_SCORE."""
        if min_score is None or relative is None:
            from django.conf import settings

            min_score = settings.MATCH_MIN_SCORE if min_score is None else min_score
            relative = settings.MATCH_RELATIVE_SCORE if relative is None else relative
        query = self.respelled(query)
        scores = self._score(query)
        # An editor's "belongs here" (a score of 1) matches whatever the cut-offs, and sets no bar for the others.
        forced = {self.doc_of(arxiv_id) for arxiv_id, belongs in query.verdicts.items() if belongs}
        earned = {doc: score for doc, score in scores.items() if doc not in forced}
        # A reader's "RAG and quantization" asks for two subjects: each paper is held to the best of its own subject
        # (the alternative its words meet best), not to the other's. A topic's aliases name one subject.
        groups = [0] * len(earned)
        if query.separate and len(query.alternatives) > 1:
            per_alternative = [self.score_text(alternative) for alternative in query.alternatives]
            groups = [
                max(range(len(per_alternative)), key=lambda i: per_alternative[i].get(doc, 0.0)) for doc in earned
            ]
        best = defaultdict(float)
        for group, score in zip(groups, earned.values(), strict=True):
            best[group] = max(best[group], score)
        matched = {doc: scores[doc] for doc in forced if doc in scores}
        for group, (doc, score) in zip(groups, earned.items(), strict=True):
            if score > 0 and score >= max(min_score, relative * best[group]):
                matched[doc] = score
        return matched

    def rank(self, query, *, limit=None, min_score=0.0, relative=0.0):
        """Matches best first, scoring at least `min_score` and `relative` × the best score; ties broken by arXiv id so
        every database gives the same order. The defaults rank every paper with any evidence at all."""
        scores = self.matches(query, min_score=min_score, relative=relative)
        matches = [Match(self.papers[doc], round(score, 6)) for doc, score in scores.items()]
        matches.sort(key=lambda match: (-match.score, match.paper.arxiv_id))
        return matches[:limit] if limit else matches


class _TermMatrix:
    """Each paper's terms (the index's: its stemmed words and the concepts it names), each weighed by its saturated
    frequency, as a slot's strength, times its inverse document frequency, and normalised: a sparse matrix, row by doc,
    for the cosine of papers' words."""

    def __init__(self, index):
        import numpy as np

        docs, columns, values = [], [], []
        for column, (_term, posting) in enumerate(index.postings.items()):
            weight = index.idf(len(posting))
            docs.append(np.fromiter(posting.keys(), dtype=np.int64, count=len(posting)))
            counts = np.fromiter(posting.values(), dtype=np.float64, count=len(posting))
            values.append(counts / (counts + SATURATION) * weight)
            columns.append(np.full(len(posting), column, dtype=np.int64))
        docs, columns, values = (np.concatenate(part) if part else np.zeros(0) for part in (docs, columns, values))
        order = np.lexsort((columns, docs))
        self.columns, self.values = columns[order].astype(np.int64), values[order]
        self.starts = np.searchsorted(docs[order], np.arange(index.size + 1))
        norms = np.sqrt(self._per_doc(self.values**2))
        owners = np.repeat(np.arange(index.size), np.diff(self.starts))
        self.values = self.values / np.where(norms > 0, norms, 1.0)[owners]
        self.width = len(index.postings)

    def _per_doc(self, products):
        import numpy as np

        totals = np.zeros(len(self.starts) - 1)
        filled = np.diff(self.starts) > 0
        if filled.any():
            totals[filled] = np.add.reduceat(products, self.starts[:-1][filled])
        return totals

    def row(self, doc):
        """(columns, values) of one doc."""
        start, end = self.starts[doc], self.starts[doc + 1]
        return self.columns[start:end], self.values[start:end]

    def dense(self, docs, weights):
        """The weighted sum of these docs' rows, as a dense vector."""
        import numpy as np

        total = np.zeros(self.width)
        for doc, weight in zip(docs, weights, strict=True):
            columns, values = self.row(doc)
            total[columns] += weight * values
        return total

    def like(self, docs, weights):
        """Per doc, its cosine with the weighted centroid of `docs`, in [0, 1]."""
        import numpy as np

        centroid = self.dense(docs, weights)
        norm = np.linalg.norm(centroid)
        if norm == 0:
            return np.zeros(len(self.starts) - 1)
        return (self._per_doc(self.values * centroid[self.columns]) / norm).clip(0.0, 1.0)

    def cosine(self, doc, other):
        columns, values = self.row(doc)
        other_columns, other_values = self.row(other)
        shared, mine, theirs = _intersect(columns, other_columns)
        return float(values[mine] @ other_values[theirs]) if len(shared) else 0.0


def _intersect(first, second):
    import numpy as np

    return np.intersect1d(first, second, assume_unique=True, return_indices=True)


def _first_at(values, targets, starts, counts):
    """Per segment (starts, counts) of `values`, the offset of the first value equal to its target."""
    import numpy as np

    owner = np.repeat(np.arange(len(starts)), counts)
    hits = np.flatnonzero(values == targets[owner])
    first = np.full(len(starts), -1)
    # Reversed, so the first hit of each segment is written last.
    first[owner[hits[::-1]]] = hits[::-1] - starts[owner[hits[::-1]]]
    return first


def _query_key(query):
    """What a query's scores depend on, as a dictionary key."""
    examples = tuple((example.paper.arxiv_id, example.belongs) for example in query.examples)
    return (repr(query.alternatives), repr(query.secondary), tuple(query.texts), examples, query.separate)


@functools.cache
def _known_words():
    vocabulary = json.loads(DICTIONARY.read_text(encoding="utf-8"))["model"]["vocab"]
    return frozenset(word for word in vocabulary if word.isalpha())


def _one_edit_away(word):
    """Every string one deletion, transposition, substitution or insertion of a letter away from `word`."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    found = {left + right[1:] for left, right in splits if right}
    found |= {left + right[1] + right[0] + right[2:] for left, right in splits if len(right) > 1}
    found |= {left + letter + right[1:] for left, right in splits if right for letter in _LETTERS}
    found |= {left + letter + right for left, right in splits for letter in _LETTERS}
    found.discard(word)
    return found


def _contains(phrase, part):
    return f" {part.lower()} " in f" {phrase.lower()} "


def _count_pairs(sequence, first, second):
    return sum(1 for a, b in pairwise(sequence) if a == first and b == second)


def _shorten(title):
    return textwrap.shorten(title, EXAMPLE_TITLE_WIDTH, placeholder=" …")


def build_index(papers=None):
    """An Index over `papers` (a Paper queryset; all stored papers when None), loading only what matching reads."""
    # Here, not at the top: the rest of this module is plain Python over paper-like objects, usable without Django.
    from papers.models import Paper

    if papers is None:
        papers = Paper.objects.all()
    fields = ["id", "arxiv_id", "title", "abstract", "search_title", "search_abstract", "embedding", "embedding_key"]
    return Index(papers.only(*fields).order_by("arxiv_id"))


def topic_examples(topic_ids):
    """{topic id: [Example]} for these topics, oldest first, in one query (their papers with them)."""
    from papers.embeddings import PAPER_FIELDS  # an example is compared by its embedding
    from papers.models import TopicExample

    rows = (
        TopicExample.objects.filter(topic_id__in=list(topic_ids))
        .select_related("paper")
        .only("topic_id", "belongs", *(f"paper__{name}" for name in PAPER_FIELDS))
        .order_by("created_at", "id")
    )
    found = defaultdict(list)
    for row in rows:
        found[row.topic_id].append(Example(row.paper, row.belongs))
    return dict(found)
