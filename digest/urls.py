"""The reader's pages about their digests (behind signed links): view in browser, feedback, their own feed."""

from django.urls import path

from digest import feeds, views
from subscriptions.routes import FEED, FEEDBACK, MANAGE, VIEW, route

app_name = "digest"

urlpatterns = [
    path(route(VIEW), views.view_digest, name="view_digest"),
    path(route(FEEDBACK), views.feedback, name="feedback"),
    path(route(MANAGE, "feedback/undo/"), views.undo_feedback, name="undo_feedback"),
    path(route(FEED), feeds.reader_feed, name="reader_feed"),
]
