"""The reader's pages about their digests: "view in browser", the "more/less like this" buttons and their undo.

Like every reader page they need no account: the signed link (subscriptions.tokens) names the reader.
"""

from csp.decorators import csp
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from digest import feedback as reader_feedback
from digest.models import Delivery
from digest.previews import build_delivered
from digest.webpage import web_page
from papers.models import Paper
from subscriptions import tokens
from subscriptions.views import bad_link, refused_link, signed_link

# "More/less like this" links from the digest (digest.feedback). The link is signed for one reader, one paper and one
# direction; a GET only shows the button (mail scanners open links), a POST records it.
FEEDBACK_QUESTIONS = {"more": "More like this", "less": "Less like this"}


@never_cache
@require_http_methods(["GET", "POST"])
def feedback(request, token):
    try:
        subscriber, paper_id, direction = tokens.read_feedback(token)
    except tokens.BadToken as error:
        return refused_link(request, error)
    paper = Paper.objects.filter(id=paper_id).only("id", "title", "arxiv_id").first()
    if paper is None:
        return bad_link(request)
    context = {
        "subscriber": subscriber,
        "paper": paper,
        "direction": direction,
        "question": FEEDBACK_QUESTIONS[direction],
        "manage_url": tokens.manage_url(subscriber),
    }
    if request.method == "POST":
        reader_feedback.record(subscriber, paper, direction)
        return render(request, "digest/feedback_done.html", context)
    return render(request, "digest/feedback.html", context)


@require_POST
@signed_link(tokens.MANAGE)
def undo_feedback(request, token, subscriber):
    feedback_id = request.POST.get("feedback", "")
    if feedback_id.isdigit():
        reader_feedback.undo(subscriber, int(feedback_id))
    return redirect(reverse("subscriptions:manage", args=[token]) + "?notice=feedback-undone#feedback")


# The email's own markup: inline styles (a CSS-inlined email), images from anywhere over HTTPS, no script at all.
@require_GET
@never_cache
@csp(
    {
        "default-src": ["'none'"],
        "style-src": ["'unsafe-inline'"],
        "img-src": ["https:", "data:"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'none'"],
    }
)
def view_digest(request, token):
    """A sent digest as a web page that looks identical to the email ("View in browser" in every digest): the email's
    markup less what only mail clients read (digest.webpage)."""
    try:
        subscriber, day = tokens.read_view(token)
    except tokens.BadToken as error:
        return refused_link(request, error)
    delivery = subscriber.deliveries.filter(digest_date=day, status=Delivery.Status.SENT).first()
    if delivery is None:
        return render(request, "digest/digest_gone.html", {"day": day}, status=404)
    return HttpResponse(web_page(build_delivered(delivery)), content_type="text/html; charset=utf-8")
