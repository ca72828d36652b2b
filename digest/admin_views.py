"""Admin pages that are not a model's changelist: the health dashboard, the exact digest preview and its test send.

config/urls.py puts them under the subscriber's admin URL, inside `admin.site.admin_view`, so only logged-in staff
reach them; each also checks the subscriber permission it needs.
"""

import datetime

from csp.decorators import csp
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from digest import previews
from digest.dashboard import get_dashboard
from subscriptions import tokens
from subscriptions.mailerrors import classify
from subscriptions.models import Subscriber


def _subscriber_and_day(request, subscriber_id, permission="view"):
    if not request.user.has_perm(f"subscriptions.{permission}_subscriber"):
        raise PermissionDenied
    subscriber = get_object_or_404(Subscriber, pk=subscriber_id)
    value = request.GET.get("date") or request.POST.get("date") or ""
    try:
        day = datetime.date.fromisoformat(value) if value else None
    except ValueError:
        messages.warning(request, f"“{value[:20]}” is not a date like 2026-11-30; showing the reader's today.")
        day = None
    return subscriber, day


def _preview_url(name, subscriber, day):
    return reverse(name, args=[subscriber.pk]) + "?" + urlencode({"date": day.isoformat()})


@require_GET
def preview(request, subscriber_id):
    subscriber, day = _subscriber_and_day(request, subscriber_id)
    result = previews.build_preview(subscriber, day)
    context = {
        **admin.site.each_context(request),
        "title": f"Digest preview for {subscriber.email}",
        "subtitle": f"{result.day:%A %d %B %Y}",
        "subscriber": subscriber,
        "preview": result,
        "opts": Subscriber._meta,
        "html_url": _preview_url("digest_preview_html", subscriber, result.day),
        "sent_url": tokens.view_url(subscriber, result.day),
        "send_url": reverse("digest_preview_send", args=[subscriber.pk]),
        "operator_email": request.user.email,
        "can_send": request.user.has_perm("subscriptions.change_subscriber"),
    }
    return TemplateResponse(request, "admin/digest/preview.html", context)


# The email's own HTML, as sent, for the preview page's frame: its inline styles need a policy of their own, and the
# sandbox keeps anything in it from running or navigating the admin.
@require_GET
@xframe_options_sameorigin
@csp(
    {
        "default-src": ["'none'"],
        "style-src": ["'unsafe-inline'"],
        "img-src": ["https:", "data:"],
        "frame-ancestors": ["'self'"],
        "sandbox": ["allow-popups", "allow-popups-to-escape-sandbox"],
    }
)
def preview_html(request, subscriber_id):
    subscriber, day = _subscriber_and_day(request, subscriber_id)
    result = previews.build_preview(subscriber, day)
    html = result.html or format_html("<p>Nothing would be sent: {}</p>", result.reason)
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def preview_send(request, subscriber_id):
    subscriber, day = _subscriber_and_day(request, subscriber_id, permission="change")
    result = previews.build_preview(subscriber, day)
    back = _preview_url("digest_preview", subscriber, result.day)
    if not request.user.email:
        messages.error(request, "Your admin user has no email address. Add one under Users, then send again.")
        return redirect(back)
    if result.message is None:
        messages.error(request, f"Nothing to send: {result.reason}")
        return redirect(back)
    message = previews.make_test_copy(result, request.user.email)
    try:
        message.send()
    except Exception as error:  # noqa: BLE001 - the operator sees why, whatever the backend raised
        messages.error(request, f"The test email was not sent: {classify(error)}")
    else:
        messages.success(request, f"Sent the test digest to {request.user.email}. Nothing was recorded for the reader.")
    return redirect(back)


@require_GET
def dashboard(request):
    if not request.user.has_perm("digest.view_digestrun"):
        raise PermissionDenied
    context = {**admin.site.each_context(request), "title": "Health", **get_dashboard()}
    return TemplateResponse(request, "admin/digest/dashboard.html", context)
