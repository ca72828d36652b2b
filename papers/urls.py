"""Public pages about papers: topic pages by day and the Atom feeds (included from config/urls.py)."""

from django.urls import path

from papers import feeds, views

app_name = "topics"

urlpatterns = [
    path("topics/", views.topic_list, name="list"),
    path("topics/<slug:slug>/", views.topic_today, name="topic"),
    path("topics/<slug:slug>/feed/", feeds.topic_feed, name="feed"),
    # Any text, so that a malformed date gets the same clear 404 page as an impossible or future one.
    path("topics/<slug:slug>/<str:day>/", views.topic_day, name="day"),
]
