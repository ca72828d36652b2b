"""A digest email's HTML made into a valid web page that looks the same ("view in browser").

An email carries markup for mail clients that a web page must not: Outlook's `mso-*` properties, presentational
attributes that premailer copies from the inlined CSS (`bgcolor` on a span, `width` on the body), a meta tag without
content for Apple Mail. The web page drops what browsers ignore anyway and turns what they honour into the same CSS,
so it shows the email as sent, pixel for pixel, and passes the Nu HTML Checker (tests/test_valid_html.py).
Outlook's conditional comments stay: to a browser they are comments.
"""

import re

from lxml import etree
from lxml import html as lxml_html

# Presentational attributes and the CSS property each becomes, on the elements a browser applies it to; elsewhere
# browsers ignore it, and so does the page. `cellpadding` is a table's padding for its own cells (below).
AS_CSS = {
    "bgcolor": ("background-color", {"body", "table", "tr", "td", "th"}),
    "width": ("width", {"table", "td", "th"}),
    "height": ("height", {"table", "tr", "td", "th"}),
    "align": ("text-align", {"td", "th", "tr", "div", "p", "h1", "h2", "h3", "h4", "h5", "h6"}),
    "valign": ("vertical-align", {"td", "th", "tr"}),
    "cellspacing": ("border-spacing", {"table"}),
}
DROPPED = {"cellpadding", "border"}  # the table's; `border` is only ever "0" here, which draws nothing
LENGTHS = {"width", "height", "border-spacing"}  # a bare number in the attribute is pixels
EMAIL_ONLY_PROPERTY = re.compile(r"^(mso-|supported-color-schemes$)")
_STYLE_RULE_RE = re.compile(r"\s*supported-color-schemes\s*:[^;}]*;?")


def web_page(email_html):
    """The email's HTML (a whole document) as a valid web page that renders the same."""
    document = lxml_html.document_fromstring(email_html)
    for meta in [meta for meta in document.iter("meta") if meta.get("name") and meta.get("content") is None]:
        meta.drop_tree()
    for style in document.iter("style"):
        style.text = _STYLE_RULE_RE.sub("", style.text or "")
    for element in document.iter(etree.Element):
        declarations = _declarations(element.get("style", ""))
        styled = {prop for prop, _value in declarations}
        if element.tag == "table" and "cellpadding" in element.attrib:
            _pad_cells(element, element.get("cellpadding"))
        for attribute in [name for name in element.attrib if name in AS_CSS or name in DROPPED]:
            value = element.attrib.pop(attribute)
            prop, applies_to = AS_CSS.get(attribute, (None, ()))
            if element.tag in applies_to and prop not in styled:
                declarations.append((prop, f"{value}px" if prop in LENGTHS and value.isdigit() else value))
        if declarations:
            element.set("style", "; ".join(f"{prop}:{value}" for prop, value in declarations))
        elif "style" in element.attrib:
            del element.attrib["style"]
    return lxml_html.tostring(document, doctype="<!DOCTYPE html>", encoding="unicode")


def _declarations(style):
    """[(property, value)] of an inline style, in order, without the properties only mail clients know."""
    declarations = []
    for declaration in style.split(";"):
        prop, _, value = declaration.partition(":")
        prop = prop.strip().lower()
        if prop and value.strip() and not EMAIL_ONLY_PROPERTY.match(prop):
            declarations.append((prop, value.strip()))
    return declarations


def _pad_cells(table, padding):
    """A table's cellpadding, as padding on each of its own cells that sets none of its own."""
    padding = f"{padding}px" if padding.isdigit() else padding
    for row in table.xpath("./tr | ./thead/tr | ./tbody/tr | ./tfoot/tr"):
        for cell in row.xpath("./td | ./th"):
            style = cell.get("style", "")
            if not re.search(r"(^|;)\s*padding\s*:", style):
                cell.set("style", f"padding:{padding}; {style}".rstrip("; "))
