"""Every bad input on the sign-up form gets a message tied to its field, and nothing is stored or sent."""

import re

import pytest
from django.core import mail

from subscriptions.models import MAX_PAPERS_PER_EMAIL, Subscriber


@pytest.fixture
def topic(make_topic):
    return make_topic("Computer vision")


def form_data(topic, **overrides):
    data = {
        "email": "ada@example.com",
        "topics": [topic.pk],
        "keywords": "",
        "time_zone": "UTC",
        "send_hour": "8",
        "frequency": "daily",
        "weekly_day": "0",
        "papers_per_email": "10",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def error_for(page, field):
    """The error text tied to a field: <ul id="id_<field>_error"> and the input's aria-describedby naming it."""
    match = re.search(rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', page, re.S)
    assert match, f"no error shown for {field}"
    assert re.search(rf'aria-describedby="[^"]*id_{field}_error', page), f"{field}'s error is not tied to its input"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("email", None, "This field is required."),
        ("email", "not-an-address", "Enter a valid email address"),
        ("email", "ada@example.com\nBcc: victim@example.org", "cannot contain line breaks"),
        ("email", "ada@example.com\r\nSubject: hi", "cannot contain line breaks"),
        ("email", "ada@exa mple.com", "Enter a valid email address"),
        ("email", "a" * 64 + "@" + "b" * 186 + ".com", "at most 254 characters"),
        ("email", "ada@xn--zz.example", "Enter a valid email address"),
        ("keywords", "\n".join(f"keyword {n}" for n in range(11)), "at most 10 keywords (you added 11)"),
        ("keywords", "x" * 61, "at most 60 characters; this one is 61"),
        ("keywords", "ok\x00not ok", "control characters"),
        ("keywords", "!!!", "“!!!” can never match a paper"),
        ("keywords", "the", "“the” can never match a paper"),
        ("keywords", "protein folding\nof the new", "“of the new” can never match a paper"),
        ("time_zone", "Mars/Olympus_Mons", "Select a valid choice"),
        ("send_hour", "24", "Select a valid choice"),
        ("send_hour", "seven", "Select a valid choice"),
        ("frequency", "hourly", "Select a valid choice"),
        ("weekly_day", "7", "Select a valid choice"),
        ("papers_per_email", "0", "greater than or equal to 1"),
        ("papers_per_email", str(MAX_PAPERS_PER_EMAIL + 1), f"less than or equal to {MAX_PAPERS_PER_EMAIL}"),
        ("papers_per_email", "ten", "Enter a whole number"),
        ("topics", ["999999"], "Select a valid choice"),
    ],
)
def test_a_bad_value_is_refused_with_a_message_on_its_field(client, topic, field, value, message):
    response = client.post("/", form_data(topic, **{field: value}))
    assert response.status_code == 400
    page = response.content.decode()
    assert message in error_for(page, field)
    assert "Please fix 1 problem" in page
    assert not Subscriber.objects.exists() and mail.outbox == []


def test_a_reader_must_choose_a_topic_or_a_keyword(client, topic):
    response = client.post("/", form_data(topic, topics=None, keywords=" \n , "))
    assert "Choose at least one topic, or add a keyword." in error_for(response.content.decode(), "topics")


def test_keywords_alone_are_enough_and_are_tidied(client, topic):
    client.post("/", form_data(topic, topics=None, keywords="  Protein   folding ,protein folding; RLHF\n\n"))
    assert Subscriber.objects.get().keywords == ["Protein folding", "RLHF"]


def test_a_hidden_field_the_form_does_not_have_cannot_set_anything(client, topic):
    client.post("/", form_data(topic, status="active", token="chosen", confirmed_at="2020-01-01"))
    reader = Subscriber.objects.get()
    assert reader.status == Subscriber.Status.PENDING and reader.token != "chosen" and reader.confirmed_at is None


def test_the_form_keeps_what_was_typed_after_an_error(client, topic):
    page = client.post("/", form_data(topic, email="bad", keywords="graph neural networks")).content.decode()
    assert 'value="bad"' in page and "graph neural networks</textarea>" in page


@pytest.mark.parametrize("value", [None, "", "UTC", "America/Port_of_Spain", "Nowhere/Else", ["Europe/Paris"]])
def test_the_time_zone_list_is_the_html_django_would_write(value):
    from django import forms

    from subscriptions.forms import LongSelect, time_zone_choices

    attrs = {"id": "id_time_zone", "required": True, "data-bound": "true", "aria-describedby": 'help "tz"'}
    expected = forms.Select(choices=time_zone_choices).render("time_zone", value, attrs=attrs)
    assert LongSelect(choices=time_zone_choices).render("time_zone", value, attrs=attrs) == expected


def test_a_refused_sign_up_keeps_the_chosen_time_zone_selected(client, topic):
    response = client.post("/", form_data(topic, email="not an address", time_zone="America/Port_of_Spain"))
    assert response.status_code == 400
    selected = re.findall(r'<option value="([^"]+)" selected>', response.content.decode())
    assert "America/Port_of_Spain" in selected
    assert 'value="UTC" selected' not in response.content.decode()


def time_zone_options(page):
    """{value: selected} of the time zone list's options."""
    [select] = re.findall(r'<select name="time_zone".*?</select>', page, re.S)
    return {value: bool(selected) for value, selected in re.findall(r'<option value="([^"]+)"( selected)?>', select)}


GEOGRAPHIC = [
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
]


def test_the_time_zone_list_offers_each_place_by_its_current_name_and_no_legacy_alias(db, client):
    offered = time_zone_options(client.get("/").content.decode())
    assert {
        "UTC",
        "Africa/Asmara",
        "Asia/Kolkata",
        "Europe/Kyiv",
        "Europe/Oslo",
        "America/Argentina/Buenos_Aires",
    } <= set(offered)
    aliases = {"Africa/Asmera", "Asia/Calcutta", "Europe/Kiev", "America/Buenos_Aires", "GB-Eire", "W-SU", "Japan"}
    assert not aliases & set(offered)
    assert not [zone for zone in offered if zone.startswith(("US/", "Etc/", "Canada/", "Brazil/", "Mexico/"))]
    assert [zone for zone in offered if zone != "UTC" and zone.split("/")[0] not in GEOGRAPHIC] == []
    assert len(offered) > 400


@pytest.mark.parametrize("zone", ["Asia/Calcutta", "US/Eastern", "Etc/GMT+5", "GB-Eire"])
def test_any_valid_time_zone_posted_is_accepted_though_not_listed(client, topic, zone):
    response = client.post("/", form_data(topic, time_zone=zone))
    assert response.status_code == 302
    assert str(Subscriber.objects.get().time_zone) == zone


def test_a_reader_with_an_unlisted_time_zone_sees_it_chosen_in_the_preference_center(client, make_reader):
    from subscriptions import tokens

    reader = make_reader(time_zone="US/Eastern")
    options = time_zone_options(client.get(tokens.manage_url(reader)).content.decode())
    assert [zone for zone, selected in options.items() if selected] == ["US/Eastern"]
