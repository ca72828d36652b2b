"""Where signed links lead: the purposes of signed links (subscriptions.tokens) and the first path segment of the
pages each purpose's links open. The URLconfs build those pages' routes with route(); whatever follows one of these
segments is a signed link, which config.logs keeps out of every log line and subscriptions.link_limits counts when
it is bad. The logging configuration imports this before Django's apps are loaded: it imports nothing of Django's.
"""

CONFIRM = "confirm"
MANAGE = "manage"
UNSUBSCRIBE = "unsubscribe"
FEED = "feed"
FEEDBACK = "feedback"
VIEW = "view"

ROUTES = {
    CONFIRM: "confirm",
    MANAGE: "manage",
    UNSUBSCRIBE: "unsubscribe",
    FEED: "feed",
    FEEDBACK: "feedback",
    VIEW: "digest",
}


def route(purpose, rest=""):
    """The URLconf route of a page behind a `purpose` link, "manage/<str:token>/", and what follows (`rest`)."""
    return f"{ROUTES[purpose]}/<str:token>/{rest}"


def is_link_path(path):
    """Whether a request path (Django's path_info) is under a signed link route."""
    return path.lstrip("/").split("/", 1)[0] in ROUTES.values()
