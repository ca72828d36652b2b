"""The sign-up emails as a reader's mail client gets them: the call to action is a button every client draws (a
coloured table cell around the link, and VML for Outlook for Windows), the plain-text part keeps the address, and the
HTML carries the digest's head (dark mode, no reformatting) and a preheader saying what the email is for."""

import re

import lxml.html
import pytest
from django.core import mail

from subscriptions.models import Subscriber
from tests.test_signup import form_data


@pytest.fixture
def sign_up(client, django_capture_on_commit_callbacks, inline_tasks, make_topic):
    topic = make_topic("Computer vision")

    def sign_up(email="ada@example.com"):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post("/", form_data([topic], email=email)).status_code == 302
        [message] = mail.outbox
        return message

    return sign_up


def html_of(message):
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    return html


def link_in(text, path):
    [url] = set(re.findall(rf"https?://\S+{path}\S+", text))
    return url


def assert_button(html, url, label):
    """A link to `url` inside a table cell with a background colour, padded, and the same link drawn in VML for
    Outlook for Windows (which ignores padding on links)."""
    document = lxml.html.fromstring(html)
    [link] = document.xpath("//a[@href=$url]", url=url)
    assert link.text_content().strip() == label
    cell = link.getparent()
    assert cell.tag == "td" and re.fullmatch(r"#[0-9a-f]{6}", cell.get("bgcolor"))
    assert re.search(r"padding:\s*\d+px \d+px", link.get("style"))
    assert re.search(r"display:\s*inline-block", link.get("style"))
    comments = [comment.text for comment in document.xpath("//comment()")]
    [vml] = [text for text in comments if text.startswith("[if mso]") and "v:roundrect" in text]
    [roundrect] = re.findall(r"<v:roundrect [^>]*>", vml)
    assert f'href="{url}"' in roundrect and f'fillcolor="{cell.get("bgcolor")}"' in roundrect
    assert label in vml
    # Outlook for Windows would otherwise draw the button twice: the HTML one is hidden from it.
    button_at = re.search(rf'<a [^>]*href="{re.escape(url)}"', html).start()
    assert html.index("<!--[if !mso]><!-->") < button_at < html.index("<!--<![endif]-->")


def assert_head_and_preheader(html, preheader):
    document = lxml.html.fromstring(html)
    metas = {meta.get("name"): meta.get("content") for meta in document.xpath("//head/meta[@name]")}
    assert metas["color-scheme"] == "light dark" and metas["supported-color-schemes"] == "light dark"
    assert "x-apple-disable-message-reformatting" in metas
    [hidden] = document.xpath("//body/div[contains(@class, 'preheader')]")
    assert hidden.text_content().startswith(preheader)
    assert "display:none" in hidden.get("style").replace(" ", "")
    # Dark mode and phones need a style element the mail client reads, not inlined styles.
    [style] = document.xpath("//head/style")
    assert re.search(r"prefers-color-scheme:\s*dark", style.text) and ".button" in style.text


def test_the_confirmation_email_has_a_button_outlook_draws_too(sign_up):
    message = sign_up()
    confirm_url = link_in(message.body, "/confirm/")
    html = html_of(message)
    assert_button(html, confirm_url, "Confirm my subscription")
    assert_head_and_preheader(html, "Confirm your address to start getting Paper Digest")


def test_the_confirmation_email_keeps_its_address_in_both_parts(sign_up):
    message = sign_up()
    confirm_url = link_in(message.body, "/confirm/")
    document = lxml.html.fromstring(html_of(message))
    # The address to copy if the button does nothing, in an element that breaks it anywhere to fit a phone.
    [fallback] = document.xpath("//*[@class='fallback-url']")
    assert fallback.text_content() == confirm_url
    assert re.search(r"word-break:\s*break-all", fallback.get("style"))
    assert re.search(r"overflow-wrap:\s*anywhere", fallback.get("style"))
    assert "If the button doesn't work, copy this address into your browser" in document.text_content()


def test_the_manage_link_email_has_a_button_outlook_draws_too(sign_up, make_reader):
    make_reader("ada@example.com", status=Subscriber.Status.ACTIVE)
    message = sign_up()
    manage_url = link_in(message.body, "/manage/")
    html = html_of(message)
    assert_button(html, manage_url, "Manage your subscription")
    assert_head_and_preheader(html, "Your link to change your Paper Digest subscription")
    [fallback] = lxml.html.fromstring(html).xpath("//*[@class='fallback-url']")
    assert fallback.text_content() == manage_url
