"""`manage.py embedpapers`: stored papers' vectors computed ahead of the runs and pages that read them (the release
step runs it), so that a model change or papers stored without vectors never slow down a page."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from papers import embeddings
from papers.models import Paper

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("embedpapers", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def valid(paper):
    paper.refresh_from_db()
    return bool(paper.embedding) and paper.embedding_key == embeddings.paper_key(paper)


def test_it_embeds_the_papers_without_valid_vectors_and_only_those(make_paper, monkeypatch):
    fresh = make_paper("Speculative decoding", "A draft model proposes tokens.")
    stale = make_paper("Graph neural networks", "Message passing.")
    current = make_paper("Protein folding", "Structures from sequences.")
    Paper.objects.filter(pk=stale.pk).update(embedding_key="static-00000000:p2:0123456789abcdef")
    run()  # the third one's vectors, as the importer would have stored them
    Paper.objects.filter(pk=stale.pk).update(embedding_key="static-00000000:p2:0123456789abcdef")
    Paper.objects.filter(pk=fresh.pk).update(embedding=b"", embedding_key="")
    encoded = []
    model = embeddings.embedder()
    encode_papers = model.encode_papers

    def counting(passages):
        encoded.append(len(passages))
        return encode_papers(passages)

    monkeypatch.setattr(model, "encode_papers", counting)

    out, _err = run("--no-progress")

    assert out.strip() == "Embedded 2 papers with the static model; 1 already had their vectors."
    assert encoded == [2]
    assert valid(fresh) and valid(stale) and valid(current)
    out, _err = run("--no-progress")
    assert out.strip() == "Embedded 0 papers with the static model; 3 already had their vectors."
    assert encoded == [2]


def test_recent_embeds_only_what_a_digest_run_reads(make_paper, settings):
    settings.DIGEST_MAX_WINDOW_DAYS = 8
    new = make_paper("Speculative decoding", "A draft model proposes tokens.")
    old = make_paper("Graph neural networks", "Message passing.", first_seen_at=timezone.now() - timedelta(days=9))
    Paper.objects.update(embedding=b"", embedding_key="")

    out, _err = run("--recent", "--no-progress")

    assert out.strip() == "Embedded 1 paper with the static model; 0 already had their vectors."
    assert valid(new) and not valid(old)


def test_an_empty_catalogue_says_so():
    out, _err = run("--no-progress")
    assert out.strip() == "Embedded 0 papers with the static model; 0 already had their vectors."


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_bad_batch_size_exits_with_code_2(value, capsys):
    from django.core.management import CommandError

    with pytest.raises(CommandError) as raised:
        call_command("embedpapers", "--batch-size", value)
    assert raised.value.returncode == 2
    assert "--batch-size" in str(raised.value)


def test_the_release_step_embeds_the_papers_a_run_reads():
    from pathlib import Path

    procfile = (Path(__file__).resolve().parent.parent / "Procfile").read_text()
    release = next(line for line in procfile.splitlines() if line.startswith("release:"))
    assert release.endswith("python manage.py embedpapers --recent --no-progress")


def test_each_batch_is_stored_as_it_goes(make_paper, monkeypatch):
    """Stored while the papers are still being read (a server-side cursor on PostgreSQL): a run stopped half way
    keeps what it stored."""
    papers = [make_paper(f"Paper {number}", "An abstract.") for number in range(3)]
    Paper.objects.update(embedding=b"", embedding_key="")
    model = embeddings.embedder()
    encode_papers, stored = model.encode_papers, []

    def counting(passages):
        stored.append(sum(valid(paper) for paper in papers))
        return encode_papers(passages)

    monkeypatch.setattr(model, "encode_papers", counting)
    out, _err = run("--batch-size", "1", "--no-progress")
    assert out.strip() == "Embedded 3 papers with the static model; 0 already had their vectors."
    assert stored == [0, 1, 2]
    assert all(valid(paper) for paper in papers)


def test_with_meaning_switched_off_it_embeds_nothing_and_loads_no_model(make_paper, settings, monkeypatch):
    """As the importer: at MATCH_SEMANTIC_WEIGHT=0 matching reads no embeddings, so the release step costs nothing."""
    settings.MATCH_SEMANTIC_WEIGHT = 0.0
    paper = make_paper("Speculative decoding", "A draft model proposes tokens.")

    def refuse(*args, **kwargs):
        raise AssertionError("the embedding model was asked for")

    monkeypatch.setattr(embeddings, "embedder", refuse)
    out, _err = run("--recent", "--no-progress")
    assert out.strip() == "Nothing embedded: MATCH_SEMANTIC_WEIGHT is 0, so matching reads no embeddings."
    paper.refresh_from_db()
    assert not paper.embedding
