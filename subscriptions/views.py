from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from subscriptions import tokens

UNSUBSCRIBE_WORDING = "Unsubscribe: stop all digest emails to this address."


def client_ip(request):
    return request.META.get("REMOTE_ADDR") or None


def bad_link(request):
    return render(request, "subscriptions/bad_link.html", status=400)


# RFC 8058: a mail client's one-click POST carries no CSRF token; the signed link is the authority here, and it
# acts only on its own subscriber.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    try:
        subscriber = tokens.find_subscriber(token, tokens.UNSUBSCRIBE)
    except tokens.BadToken:
        return bad_link(request)
    if request.method == "GET":
        # Link scanners open GETs; only a POST unsubscribes.
        return render(request, "subscriptions/unsubscribe.html", {"subscriber": subscriber})
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    subscriber.unsubscribe(
        ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", ""),
        wording="List-Unsubscribe=One-Click (from the mail client)" if one_click else UNSUBSCRIBE_WORDING,
    )
    return render(request, "subscriptions/unsubscribed.html", {"subscriber": subscriber})


@require_GET
def manage(request, token):
    try:
        subscriber = tokens.find_subscriber(token, tokens.MANAGE)
    except tokens.BadToken:
        return bad_link(request)
    context = {
        "subscriber": subscriber,
        "topics": subscriber.topics.order_by("display_order", "name"),
        "unsubscribe_url": tokens.unsubscribe_url(subscriber),
    }
    return render(request, "subscriptions/manage.html", context)
