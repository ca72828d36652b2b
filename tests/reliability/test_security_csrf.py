"""Cross-site request forgery: every state-changing form needs the page's CSRF token; only the RFC 8058 one-click
unsubscribe, which a mail client posts without any page, does not."""

from collections import namedtuple

import pytest
from django.core import mail
from django.test import Client

from digest.models import Delivery, Feedback
from subscriptions import tokens
from subscriptions.models import Consent, ErasedAddress, Subscriber
from tests.reliability.test_security_tokens import state, world  # noqa: F401 - world is a fixture

OTHER_SITE = "https://attacker.example"

Form = namedtuple("Form", "name page action data staff", defaults=[False])


def forms(world):  # noqa: F811
    ada, pat, paper = world["ada"], world["pat"], world["paper"]
    manage = tokens.make_token(ada, tokens.MANAGE)
    unsubscribe = tokens.make_token(ada, tokens.UNSUBSCRIBE)
    feedback_id = Feedback.objects.get(subscriber=ada).id
    preview = f"/admin/subscriptions/subscriber/{ada.pk}/preview/"
    sign_up = {
        "email": "mallory@example.com",
        "topics": [world["topic"].pk],
        "time_zone": "UTC",
        "send_hour": "8",
        "frequency": "daily",
        "weekly_day": "0",
        "papers_per_email": "10",
    }
    return [
        Form("sign-up", "/", "/", sign_up),
        Form("confirm", f"/confirm/{tokens.make_token(pat, tokens.CONFIRM)}/", None, {}),
        Form("save preferences", f"/manage/{manage}/", None, {**sign_up, "email": "", "send_hour": "3"}),
        Form("pause", f"/manage/{manage}/", f"/manage/{manage}/pause/", {}),
        Form("delete my data", f"/manage/{manage}/delete/", None, {}),
        Form("undo feedback", f"/manage/{manage}/", f"/manage/{manage}/feedback/undo/", {"feedback": feedback_id}),
        Form("resubscribe", f"/unsubscribe/{unsubscribe}/", f"/unsubscribe/{unsubscribe}/resubscribe/", {}),
        Form("feedback", f"/feedback/{tokens.feedback_value(ada, paper.id, 'less')}/", None, {}),
        Form("admin login", "/admin/login/", None, {"username": "operator", "password": "a-long-passphrase-1"}),
        Form(
            "admin action",
            "/admin/subscriptions/subscriber/",
            None,
            {"action": "erase_selected", "_selected_action": [ada.pk]},
            staff=True,
        ),
        Form("admin test send", preview, preview + "send/", {}, staff=True),
    ]


FORM_NAMES = [
    "sign-up",
    "confirm",
    "save preferences",
    "pause",
    "delete my data",
    "undo feedback",
    "resubscribe",
    "feedback",
    "admin login",
    "admin action",
    "admin test send",
]


def admin_state():
    from django.contrib.sessions.models import Session

    return Session.objects.count(), Delivery.objects.count()


@pytest.mark.parametrize("name", FORM_NAMES)
def test_a_form_posted_without_its_csrf_token_is_refused_and_changes_nothing(world, django_user_model, settings, name):  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    operator = django_user_model.objects.create_superuser("operator", "operator@example.org", "a-long-passphrase-1")
    ada = world["ada"]
    if name == "resubscribe":
        ada.unsubscribe()
    form = next(form for form in forms(world) if form.name == name)
    action = form.action or form.page
    client = Client(enforce_csrf_checks=True)
    if form.staff:
        client.force_login(operator)
    before = (state(), admin_state())

    no_cookie = client.post(action, form.data)
    assert client.get(form.page).status_code == 200
    cookie = client.cookies["csrftoken"].value
    cookie_only = client.post(action, form.data)
    wrong_token = client.post(action, {**form.data, "csrfmiddlewaretoken": "x" * 32})
    cross_site = client.post(action, {**form.data, "csrfmiddlewaretoken": cookie}, headers={"Origin": OTHER_SITE})

    for attempt, response in [
        ("no cookie", no_cookie),
        ("cookie, no token", cookie_only),
        ("wrong token", wrong_token),
        ("another site's Origin", cross_site),
    ]:
        assert response.status_code == 403, attempt
        assert "nothing was changed" in response.content.decode(), attempt
    assert (state(), admin_state()) == before
    assert mail.outbox == []
    # The page's own token, from the same site: the form works.
    accepted = client.post(action, {**form.data, "csrfmiddlewaretoken": cookie})
    assert accepted.status_code in (200, 302), accepted.content.decode()[:500]


def test_the_one_click_unsubscribe_needs_no_csrf_token_and_changes_only_that_reader(world):  # noqa: F811
    ada, bob = world["ada"], world["bob"]
    client = Client(enforce_csrf_checks=True)
    before = {reader.email: reader.consents.count() for reader in Subscriber.objects.all()}

    response = client.post(
        f"/unsubscribe/{tokens.make_token(ada, tokens.UNSUBSCRIBE)}/",
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
        headers={"Origin": OTHER_SITE},  # a webmail posts it from its own origin
    )

    assert response.status_code == 200
    statuses = dict(Subscriber.objects.values_list("email", "status"))
    assert statuses == {
        "ada@example.com": Subscriber.Status.UNSUBSCRIBED,
        "bob@example.com": Subscriber.Status.ACTIVE,
        "pat@example.com": Subscriber.Status.PENDING,
    }
    after = {reader.email: reader.consents.count() for reader in Subscriber.objects.all()}
    assert after == {**before, "ada@example.com": before["ada@example.com"] + 1}
    assert Consent.objects.filter(subscriber=bob).count() == before["bob@example.com"]
    assert not ErasedAddress.objects.exists() and mail.outbox == []
