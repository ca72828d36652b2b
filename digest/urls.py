"""The reader's pages about their digests (behind signed links): view in browser, feedback, their own feed."""

from django.urls import path

from digest import feeds, views

app_name = "digest"

urlpatterns = [
    path("digest/<str:token>/", views.view_digest, name="view_digest"),
    path("feedback/<str:token>/", views.feedback, name="feedback"),
    path("manage/<str:token>/feedback/undo/", views.undo_feedback, name="undo_feedback"),
    path("feed/<str:token>/", feeds.reader_feed, name="reader_feed"),
]
