"""Synthetic topics, papers and subscribers for bench/digest_bench.py. Needs Django set up; deterministic per seed.

Topics are named after concepts of papers.vocabulary (the spelled-out phrase as name, the abbreviation and another form
as aliases), qualified by an application domain once the concepts run out. Papers are built from the same vocabulary:
each has one main concept in its title and one or two more in its abstract, so every topic matches some tens of papers
of a 1,000-paper pool through the product's own matcher.
"""

import random
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

# Concepts with a spelled-out, multi-word form, good as topic names. Order decides which the first topics get.
TOPIC_CONCEPTS = [
    "llm", "gnn", "rl", "rag", "cot", "diffusion", "vlm", "asr", "tts", "moe", "nerf", "3dgs", "icl", "gan", "vae",
    "vit", "cnn", "rnn", "ssm", "nlp", "ssl", "kd", "peft", "lora", "sft", "kv_cache", "spec_decoding", "ner", "qa",
    "vqa", "nmt", "ocr", "slam", "t2i", "t2v", "mcts", "fl", "sae", "ts_forecast", "code_gen", "imitation", "rlhf",
    "dpo", "ppo", "ood", "dg", "da", "offline_rl", "marl", "mllm", "vla", "gcn", "gat", "slm", "xai", "mlp", "quant",
    "distributed", "compression", "cv",
]  # fmt: skip

DOMAINS = [
    "protein design", "medical imaging", "autonomous driving", "weather prediction", "robot manipulation",
    "legal documents", "music generation", "chemistry", "recommendation", "finance", "education", "satellite imagery",
    "drug discovery", "materials science", "climate modeling", "sign language", "low resource languages",
    "video understanding", "document layout", "cybersecurity", "genomics", "agriculture", "sports analytics",
    "e commerce search", "scientific literature", "energy systems", "traffic control", "mental health",
]  # fmt: skip

ADJECTIVES = [
    "Scalable", "Robust", "Efficient", "Adaptive", "Unified", "Sparse", "Hierarchical", "Contrastive", "Lightweight",
    "Probabilistic", "Modular", "Interpretable", "Continual", "Causal", "Compositional", "Geometric", "Multilingual",
]  # fmt: skip

NOUNS = ["benchmark", "framework", "study", "toolkit", "perspective", "recipe", "dataset", "analysis", "approach"]

FILLER = [
    "Experiments on {n} public benchmarks show consistent gains over strong baselines.",
    "We release code, checkpoints and evaluation scripts to support future work.",
    "Our analysis reveals when and why existing approaches fail under realistic conditions.",
    "The method requires no additional annotations and scales to billions of tokens.",
    "We further study robustness, calibration and sample complexity in controlled settings.",
    "Ablations isolate the contribution of each component and of the training schedule.",
    "Compared with prior work, our approach reduces the number of trainable parameters by {n}x.",
    "A human study with {n} participants confirms the improvements are perceptible.",
    "We discuss limitations, societal impact and directions for follow-up research.",
]  # fmt: skip

FIRST_NAMES = ["Ana", "Wei", "Sara", "Jonas", "Priya", "Mateo", "Yuki", "Olga", "Kwame", "Lena", "Ravi", "Chen", "Amir"]
LAST_NAMES = ["Silva", "Zhang", "Kim", "Müller", "Patel", "García", "Tanaka", "Ivanova", "Mensah", "Rossi", "Nguyen"]


def _concept_forms(key):
    from papers.vocabulary import CONCEPTS

    forms, _broader = CONCEPTS[key]
    return forms


def _spelled(key):
    """The concept's first multi-word form (its readable name), else its first form."""
    forms = _concept_forms(key)
    return next((form for form in forms if " " in form), forms[0])


def topic_specs(count, rng):
    """[(name, slug, aliases, concept key, domain or None)] for `count` topics."""
    specs, names = [], set()
    round_number = 0
    while len(specs) < count:
        for key in TOPIC_CONCEPTS:
            if len(specs) == count:
                break
            forms = _concept_forms(key)
            spelled = _spelled(key)
            short = next((form for form in forms if " " not in form), None)
            domain = None if round_number == 0 else DOMAINS[(TOPIC_CONCEPTS.index(key) + round_number) % len(DOMAINS)]
            name = spelled[0].upper() + spelled[1:] + "s"
            aliases = [form for form in forms if form != spelled][:2]
            if short:
                aliases = [short.upper()] + [alias for alias in aliases if alias != short]
            if domain:
                name = f"{name} for {domain}"
                aliases = [f"{alias} {domain}" for alias in aliases]
            if name in names:
                continue
            names.add(name)
            slug = "-".join(name.lower().split())[:100]
            specs.append((name, slug, aliases, key, domain))
        round_number += 1
    return specs


def _authors(rng):
    return [f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}" for _ in range(rng.randint(1, 9))]


def paper_text(rng, main, extra, domain):
    """(title, abstract) mentioning concept `main` in the title and the `extra` concepts in the abstract."""
    main_form = rng.choice(_concept_forms(main)[:3])
    title = rng.choice(
        [
            f"{rng.choice(ADJECTIVES)} {main_form} for {domain}",
            f"{main_form[0].upper()}{main_form[1:]} at scale: a {rng.choice(NOUNS)} for {domain}",
            f"Rethinking {main_form} in {domain}",
            f"{rng.choice(ADJECTIVES)} {main_form} with {_spelled(extra[0])}",
        ]
    )
    sentences = [
        f"We study {_spelled(main)} for {domain}, where current methods struggle to generalise.",
        f"Our {rng.choice(ADJECTIVES).lower()} {rng.choice(NOUNS)} combines {main_form} with {_spelled(extra[0])}.",
    ]
    for key in extra:
        form = rng.choice(_concept_forms(key)[:3])
        sentences.append(f"A key ingredient is {form}, which we adapt to {domain} with {_spelled(key)} objectives.")
    for template in rng.sample(FILLER, rng.randint(3, 5)):
        sentences.append(template.format(n=rng.randint(2, 40)))
    rng.shuffle(sentences)
    return title, " ".join(sentences)


def synthetic_paper(rng, number, title, abstract, seen, *, with_code=True):
    """An unsaved Paper first seen at `seen`: authors, dates, a long-tailed upvote count and, for some, a code link."""
    from papers.models import Paper

    paper = Paper(
        arxiv_id=f"2601.{number:05d}",
        title=title,
        raw_title=title,
        abstract=abstract,
        authors=_authors(rng),
        published_at=seen - timedelta(hours=rng.uniform(0, 72)),
        featured_at=seen if rng.random() < 0.6 else None,
        first_seen_at=seen,
        upvotes=int(rng.paretovariate(1.2)) - 1 if rng.random() < 0.9 else 0,
        source=Paper.Source.HUGGINGFACE,
    )
    if with_code:
        paper.github_url = f"https://github.com/example/repo{number}" if rng.random() < 0.4 else ""
    paper.refresh_search_text()  # bulk_create skips save(), which would do this
    return paper


# Readers with feedback (--feedback-share): this many "more" and "less" clicks each, on papers older than the pool.
FEEDBACK_CLICKS = {"more": 4, "less": 4}
OLD_PAPERS = 300


def generate(*, papers, topics, subscribers, per_email, seed, topic_skew=0.0, feedback_share=0.0, log=print):
    """Create the topics, papers and subscribers; return a dict of what was made.

    With `feedback_share`, that share of the readers also has "more / less like this" feedback, enough for a personal
    model (papers.ranking), on OLD_PAPERS papers first seen before the pool's window. It is drawn from a random
    generator of its own, after everything else, so the rest of the data is the same as without it."""
    from django.conf import settings
    from django.utils import timezone

    from papers import embeddings
    from papers.models import Paper, Topic
    from subscriptions.models import Subscriber

    rng = random.Random(seed)
    now = timezone.now()
    started = time.perf_counter()

    specs = topic_specs(topics, rng)
    Topic.objects.bulk_create(
        [
            Topic(name=name, slug=slug, aliases="\n".join(aliases), display_order=number)
            for number, (name, slug, aliases, _key, _domain) in enumerate(specs)
        ]
    )
    topic_rows = list(Topic.objects.order_by("display_order").values_list("id", flat=True))
    concept_keys = [key for _name, _slug, _aliases, key, _domain in specs]
    log(f"{len(topic_rows)} topics")

    batch = []
    for number in range(papers):
        main = rng.choice(concept_keys)
        others = [key for key in concept_keys if key != main] or [main]
        extra = rng.sample(others, k=min(rng.randint(1, 2), len(others)))
        domain = rng.choice(DOMAINS)
        title, abstract = paper_text(rng, main, extra, domain)
        seen = now - timedelta(seconds=rng.uniform(60, 24 * 3600 - 60))
        batch.append(synthetic_paper(rng, number, title, abstract, seen))
    if settings.MATCH_SEMANTIC_WEIGHT > 0:
        # As papers.ingest does: papers arrive embedded, so a digest run reads their vectors, never computes them.
        embeddings.paper_vectors(batch, save=False)
    Paper.objects.bulk_create(batch, batch_size=500)
    log(f"{papers} papers")

    weights = [1 / (rank + 1) ** topic_skew for rank in range(len(topic_rows))]
    utc = ZoneInfo("UTC")
    through = Subscriber.topics.through
    batch_size = 5000
    links = 0
    for start in range(0, subscribers, batch_size):
        rows = [
            Subscriber(
                email=f"reader{number}@example.com",
                status=Subscriber.Status.ACTIVE,
                time_zone=utc,
                send_hour=0,
                frequency=Subscriber.Frequency.DAILY,
                papers_per_email=per_email,
                created_at=now - timedelta(days=30),
                confirmed_at=now - timedelta(days=30),
            )
            for number in range(start, min(start + batch_size, subscribers))
        ]
        created = Subscriber.objects.bulk_create(rows)
        pairs = []
        for subscriber in created:
            if subscriber.pk is None:
                raise SystemExit("bulk_create did not return primary keys on this database")
            wanted = rng.randint(1, min(5, len(topic_rows)))
            chosen = set()
            if topic_skew:
                while len(chosen) < wanted:
                    chosen.add(rng.choices(topic_rows, weights)[0])
            else:
                chosen.update(rng.sample(topic_rows, wanted))
            pairs += [through(subscriber_id=subscriber.pk, topic_id=topic_id) for topic_id in sorted(chosen)]
        through.objects.bulk_create(pairs, batch_size=5000)
        links += len(pairs)
        if (start // batch_size) % 5 == 4:
            log(f"{start + len(rows)} subscribers")
    log(f"{subscribers} subscribers, {links} topic choices, in {time.perf_counter() - started:.1f} s")

    with_feedback = add_feedback(feedback_share, papers, concept_keys, seed, now, log) if feedback_share else 0

    # How many pool papers each topic matches, through the product's own matcher and threshold.
    from papers.ranking import Pool

    pool = Pool.load(timezone.now())
    counts = sorted(len(pool._scored(("topic", topic_id))) for topic_id in pool.topics)
    return {
        "topics": len(topic_rows),
        "papers": papers,
        "subscribers": subscribers,
        "topic_choices": links,
        "topic_skew": topic_skew,
        "readers_with_feedback": with_feedback,
        "matches_per_topic": {
            "min": counts[0] if counts else 0,
            "median": counts[len(counts) // 2] if counts else 0,
            "max": counts[-1] if counts else 0,
            "threshold": settings.MATCH_MIN_SCORE,
        },
        "generate_seconds": round(time.perf_counter() - started, 2),
    }


def add_feedback(share, first_number, concept_keys, seed, now, log):
    """OLD_PAPERS papers first seen a month ago and, for about `share` of the readers, FEEDBACK_CLICKS on them."""
    from django.conf import settings

    from digest.models import Feedback
    from papers import embeddings
    from papers.models import Paper
    from subscriptions.models import Subscriber

    rng = random.Random(seed + 1)
    old = []
    for number in range(first_number, first_number + OLD_PAPERS):
        main = rng.choice(concept_keys)
        extra = rng.sample([key for key in concept_keys if key != main] or [main], k=1)
        title, abstract = paper_text(rng, main, extra, rng.choice(DOMAINS))
        old.append(synthetic_paper(rng, number, title, abstract, now - timedelta(days=30)))
    if settings.MATCH_SEMANTIC_WEIGHT > 0:
        embeddings.paper_vectors(old, save=False)  # as papers.ingest does
    old_ids = [paper.id for paper in Paper.objects.bulk_create(old, batch_size=500)]
    rows = []
    for subscriber_id in Subscriber.objects.order_by("id").values_list("id", flat=True).iterator():
        if rng.random() >= share:
            continue
        clicked = rng.sample(old_ids, sum(FEEDBACK_CLICKS.values()))
        directions = [direction for direction, count in FEEDBACK_CLICKS.items() for _ in range(count)]
        rows += [
            Feedback(subscriber_id=subscriber_id, paper_id=paper_id, direction=direction)
            for paper_id, direction in zip(clicked, directions, strict=True)
        ]
    Feedback.objects.bulk_create(rows, batch_size=5000)
    readers = len(rows) // sum(FEEDBACK_CLICKS.values())
    log(f"{OLD_PAPERS} older papers, feedback from {readers} readers")
    return readers
