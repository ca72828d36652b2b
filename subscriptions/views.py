"""Reader pages: sign-up, confirmation, the preference center and unsubscribe. None needs an account: signed links
(subscriptions.tokens) are the authority, and each acts only on its own subscriber."""

import functools
import json
from datetime import timedelta

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.core import is_ratelimited
from django_ratelimit.decorators import ratelimit
from django_ratelimit.exceptions import Ratelimited

from papers.models import Paper, Topic
from papers.trending import trending_score
from subscriptions import link_limits, signup, tokens
from subscriptions.forms import FORM_VERSION, PreferencesForm, SubscribeForm, consent_wording
from subscriptions.models import Consent, ErasedAddress, Subscriber

UNSUBSCRIBE_WORDING = "Unsubscribe: stop all digest emails to this address."
ONE_CLICK_WORDING = "List-Unsubscribe=One-Click (from the mail client)"
CONFIRM_WORDING = "Confirm my subscription: start sending the digest to this address."
PREFERENCES_WORDING = "Save preferences"
PAUSE_WORDING = "Pause digests: send nothing until I resume."
RESUME_WORDING = "Resume digests."
RESUBSCRIBE_WORDING = "Resubscribe: start my digests again with my saved preferences."
SAMPLE_SIZE = 3
SAMPLE_CACHE_SECONDS = 300


def bad_link(request, *, expired=False):
    context = {"expired": expired, "max_age_days": settings.CONFIRMATION_MAX_AGE_DAYS}
    return render(request, "subscriptions/bad_link.html", context, status=400)


def refused_link(request, error):
    """The bad-link page for a signed link value that tokens refused (`error`, a BadToken), or for a subscriber deleted
    since, a 410 page saying so. A value this site did not sign counts against the client (link_limits)."""
    if isinstance(error, tokens.BadSignature):
        link_limits.count_bad_link(request)
    if isinstance(error, tokens.SubscriberGone):
        return render(request, "subscriptions/deleted.html", status=410)
    return bad_link(request, expired=isinstance(error, tokens.ExpiredToken))


def rate_limited(request, exception):
    """RATELIMIT_VIEW: too many sign-ups from one network or for one address."""
    return render(request, "subscriptions/rate_limited.html", status=429)


def csrf_failure(request, reason=""):
    """CSRF_FAILURE_VIEW: a form sent without its cookie (blocked cookies, or a page left open for days)."""
    return render(request, "subscriptions/csrf_failure.html", status=403)


def sample_papers():
    """Today's top few papers for the landing page, cached briefly: the page is the most visited of all. Each process
    keeps its own copy (the "local" cache), so a visit costs no round trip to Redis either."""
    cache = caches["local"]
    papers = cache.get("landing-sample")
    if papers is None:
        now = timezone.now()
        recent = list(Paper.objects.filter(first_seen_at__gte=now - timedelta(days=2)).order_by("-upvotes")[:50])
        if not recent:
            recent = list(Paper.objects.order_by("-first_seen_at")[:SAMPLE_SIZE])
        recent.sort(key=lambda paper: trending_score(paper, now), reverse=True)
        papers = [
            {"title": paper.title, "url": paper.hf_url, "authors": paper.get_short_authors(), "upvotes": paper.upvotes}
            for paper in recent[:SAMPLE_SIZE]
        ]
        cache.set("landing-sample", papers, SAMPLE_CACHE_SECONDS)
    return papers


@ratelimit(key="ip", rate=lambda group, request: settings.SUBSCRIBE_RATE_PER_IP, method="POST", block=True)
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request):
    # An empty POST is a sign-up with every field missing, not a fresh form.
    if request.method == "POST":
        form = SubscribeForm(request.POST)
    else:
        # A topic page's "Get them by email" (?topic=<slug>) comes with its topic chosen.
        slug = request.GET.get("topic")
        chosen = list(Topic.objects.filter(slug=slug, is_active=True).values_list("pk", flat=True)) if slug else []
        form = SubscribeForm(initial={"topics": chosen} if chosen else None)
    if request.method == "POST" and form.is_valid():
        if not form.is_bot:
            email = form.cleaned_data["email"]
            # Counted on the address as stored, so changing its case or spelling does not reset the count.
            address_key = lambda group, request: ErasedAddress.hash(email)  # noqa: E731
            rate = settings.SUBSCRIBE_RATE_PER_ADDRESS
            if is_ratelimited(request, group="subscribe-address", key=address_key, rate=rate, increment=True):
                raise Ratelimited()
            proof = signup.Proof.from_request(request, wording=consent_wording(), form_version=FORM_VERSION)
            signup.subscribe(email, form.get_preferences(), proof)
        # The same answer for a new, pending, active or unknown address, and for a bot.
        return redirect("subscriptions:subscribe_sent")
    context = {"form": form, "papers": sample_papers(), "consent_wording": consent_wording()}
    return render(request, "subscriptions/subscribe.html", context, status=400 if form.errors else 200)


def spoken_duration(seconds):
    """ "1 hour", "10 minutes", "90 seconds": in the largest unit that divides `seconds`."""
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{seconds} seconds"


@require_GET
def subscribe_sent(request):
    # The page is the same whatever was sent (or not): emails to one address are spaced by CONFIRMATION_RESEND_SECONDS,
    # so from now on that long, another sign-up certainly sends one.
    spacing = settings.CONFIRMATION_RESEND_SECONDS
    at = timezone.now() + timedelta(seconds=spacing)
    context = {
        "max_age_days": settings.CONFIRMATION_MAX_AGE_DAYS,
        "spacing": spoken_duration(spacing) if spacing else None,
        # Shown to the minute, so rounded up to the next one.
        "try_again_at": at.replace(second=0, microsecond=0) + timedelta(minutes=bool(at.second or at.microsecond)),
    }
    return render(request, "subscriptions/subscribe_sent.html", context)


def signed_link(purpose):
    """View decorator: the view gets the Subscriber its signed `token` names, or the reader gets the 400 bad-link
    page (an expired confirmation link says so). Pages behind signed links are never cached."""

    def decorate(view):
        @functools.wraps(view)
        @never_cache
        def wrapped(request, token):
            try:
                subscriber = tokens.find_subscriber(token, purpose)
            except tokens.BadToken as error:
                return refused_link(request, error)
            return view(request, token, subscriber)

        return wrapped

    return decorate


@require_http_methods(["GET", "POST"])
@signed_link(tokens.CONFIRM)
def confirm(request, token, subscriber):
    # Mail scanners open links too: a GET only shows the button, so nobody is subscribed by a robot.
    if request.method == "POST":
        subscriber = signup.confirm(subscriber, signup.Proof.from_request(request, wording=CONFIRM_WORDING))
        if subscriber is None:
            return bad_link(request)
    if subscriber.status in (Subscriber.Status.ACTIVE, Subscriber.Status.PAUSED):
        return render(request, "subscriptions/confirmed.html", {"manage_url": tokens.manage_url(subscriber)})
    if not subscriber.awaits_confirmation:
        return bad_link(request)
    # The choices the button confirms, so the reader sees them before agreeing.
    choices = signup.pending_choices(subscriber) if subscriber.pending_preferences is not None else None
    if choices is None:
        choices = {**subscriber.get_preferences(), "topics": list(subscriber.topics.all())}
    return render(request, "subscriptions/confirm.html", {"subscriber": subscriber, **signup.choices_context(choices)})


def _manage_context(subscriber, form, **extra):
    return {
        "subscriber": subscriber,
        "form": form,
        "token": tokens.make_token(subscriber, tokens.MANAGE),
        "unsubscribe_url": tokens.unsubscribe_url(subscriber),
        # A path, not a bare signed value: log lines (config.logs) cut out whatever follows a signed link route.
        "resubscribe_url": reverse(
            "subscriptions:resubscribe", args=[tokens.make_token(subscriber, tokens.UNSUBSCRIBE)]
        ),
        "feed_url": tokens.feed_url(subscriber),
        "feedback": subscriber.feedback.select_related("paper"),
        **extra,
    }


@require_http_methods(["GET", "POST"])
@signed_link(tokens.MANAGE)
def manage(request, token, subscriber):
    if request.method == "POST":
        form = PreferencesForm(request.POST, subscriber=subscriber)
        if form.is_valid():
            # The change and its consent record are kept together or not at all. The row is read again, locked:
            # saving writes it whole, and a status changed meanwhile (a bounce, an unsubscribe) must stay.
            with transaction.atomic():
                subscriber = Subscriber.objects.select_for_update().filter(pk=subscriber.pk).first()
                if subscriber is None:
                    return bad_link(request)
                changes = signup.apply_preferences(subscriber, form.get_preferences())
                if changes:
                    proof = signup.Proof.from_request(request, wording=PREFERENCES_WORDING, form_version=FORM_VERSION)
                    subscriber.record(Consent.Action.PREFERENCES, details={"changes": changes}, **proof.as_kwargs())
            return redirect(reverse("subscriptions:manage", args=[token]) + "?saved=1")
        return render(request, "subscriptions/manage.html", _manage_context(subscriber, form), status=400)
    form = PreferencesForm(subscriber=subscriber)
    context = _manage_context(subscriber, form, saved="saved" in request.GET, notice=request.GET.get("notice"))
    return render(request, "subscriptions/manage.html", context)


@require_POST
@signed_link(tokens.MANAGE)
def pause(request, token, subscriber):
    if request.POST.get("action") == "resume":
        subscriber.resume(**signup.Proof.from_request(request, wording=RESUME_WORDING).as_kwargs())
        notice = "resumed"
    else:
        subscriber.pause(**signup.Proof.from_request(request, wording=PAUSE_WORDING).as_kwargs())
        notice = "paused"
    return redirect(reverse("subscriptions:manage", args=[token]) + f"?notice={notice}")


@require_GET
@signed_link(tokens.MANAGE)
def download_data(request, token, subscriber):
    response = HttpResponse(
        json.dumps(subscriber.export_data(), indent=2, ensure_ascii=False), content_type="application/json"
    )
    response["Content-Disposition"] = 'attachment; filename="my-paper-digest-data.json"'
    return response


@require_http_methods(["GET", "POST"])
@signed_link(tokens.MANAGE)
def erase(request, token, subscriber):
    if request.method == "POST":
        subscriber.erase()
        return render(request, "subscriptions/erased.html")
    return render(request, "subscriptions/erase.html", {"subscriber": subscriber, "manage_token": token})


# RFC 8058: a mail client's one-click POST carries no CSRF token; the signed link is the authority here, and it
# acts only on its own subscriber.
@csrf_exempt
@require_http_methods(["GET", "POST"])
@signed_link(tokens.UNSUBSCRIBE)
def unsubscribe(request, token, subscriber):
    context = {"subscriber": subscriber, "token": token, "manage_url": tokens.manage_url(subscriber)}
    if request.method == "GET":
        # Link scanners open GETs; only a POST unsubscribes. A reader already unsubscribed (the preference center's
        # "Resubscribe" link, an old email's link) is offered to resubscribe instead.
        if subscriber.status == Subscriber.Status.UNSUBSCRIBED:
            return render(request, "subscriptions/unsubscribed.html", context)
        return render(request, "subscriptions/unsubscribe.html", context)
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    wording = ONE_CLICK_WORDING if one_click else UNSUBSCRIBE_WORDING
    subscriber.unsubscribe(**signup.Proof.from_request(request, wording=wording).as_kwargs())
    return render(request, "subscriptions/unsubscribed.html", context)


@require_POST
@signed_link(tokens.UNSUBSCRIBE)
def resubscribe(request, token, subscriber):
    subscriber.resubscribe(**signup.Proof.from_request(request, wording=RESUBSCRIBE_WORDING).as_kwargs())
    context = {"subscriber": subscriber, "manage_url": tokens.manage_url(subscriber)}
    return render(request, "subscriptions/resubscribed.html", context)
