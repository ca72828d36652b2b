"""What `make demo` shows a new reader: its topic pages and digests list no paper under a topic it is not about.

The cross-topic mismatches readers met before the matcher blended meaning in and calibrated "matches" are pinned here,
with the papers each page must still show."""

import pytest
from django.core import mail
from django.core.management import call_command
from lxml import html

from papers.models import Topic

# Each topic page: papers it must never list (found there before), and papers it must list.
NOT_ON = {
    "diffusion-and-image-generation": ["Chain-of-Thought Prompting Elicits Reasoning in Large Language Models"],
    "vision-language-models": ["Proximal Policy Optimization Algorithms"],
    "speech-and-audio": ["A Baseline for Detecting Misclassified and Out-of-Distribution Examples in Neural Networks"],
    "efficient-inference": [
        "Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting",
        "DreamFusion: Text-to-3D using 2D Diffusion",
        "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations",
    ],
    "reinforcement-learning-and-robotics": [
        "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations",
    ],
}
ON = {
    "diffusion-and-image-generation": ["Denoising Diffusion Probabilistic Models"],
    "vision-language-models": ["Flamingo: a Visual Language Model for Few-Shot Learning"],
    "speech-and-audio": [
        "wav2vec 2.0: A Framework for Self-Supervised Learning of Speech Representations",
        "Robust Speech Recognition via Large-Scale Weak Supervision",
    ],
    "efficient-inference": [
        "Fast Inference from Transformers via Speculative Decoding",
        "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness",
    ],
    "reinforcement-learning-and-robotics": ["Proximal Policy Optimization Algorithms"],
}


@pytest.fixture
def demo(db):
    call_command("loadsample", "--demo-readers", stdout=open("/dev/null", "w"))  # noqa: SIM115


def listed(client, slug):
    """Every paper a topic's pages list, over the days the demo's papers came in on."""
    response = client.get(f"/topics/{slug}/", follow=True)
    assert response.status_code == 200
    tree = html.fromstring(response.content)
    return {link.text_content().strip() for link in tree.cssselect("ol.papers > li > h2 > a")}


@pytest.mark.parametrize("slug", sorted(NOT_ON))
def test_the_demos_topic_pages_list_no_paper_of_another_topic(client, demo, slug):
    assert Topic.objects.filter(slug=slug).exists()
    titles = listed(client, slug)
    assert not titles & set(NOT_ON[slug]), f"/topics/{slug}/ lists {sorted(titles & set(NOT_ON[slug]))}"
    assert set(ON[slug]) <= titles, f"/topics/{slug}/ misses {sorted(set(ON[slug]) - titles)}"


def test_the_demos_digests_file_each_paper_under_a_topic_it_is_about(demo, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    call_command("senddigests", "--now", stdout=open("/dev/null", "w"))  # noqa: SIM115
    grace = next(message for message in mail.outbox if message.to == ["grace@example.com"])
    text = grace.body
    for card in text.split("\n\n"):
        if any(title in card for title in ("wav2vec 2.0", "Direct Preference Optimization", "Constitutional AI")):
            assert "Reinforcement learning and robotics" not in card, card
    first = text.split("\n\n1. ", 1)[1]
    assert first.startswith("Deep reinforcement learning from human preferences"), first[:200]
