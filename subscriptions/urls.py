from django.urls import path

from subscriptions import views
from subscriptions.routes import CONFIRM, MANAGE, UNSUBSCRIBE, route

app_name = "subscriptions"

urlpatterns = [
    path("", views.subscribe, name="subscribe"),
    path("subscribe/sent/", views.subscribe_sent, name="subscribe_sent"),
    path(route(CONFIRM), views.confirm, name="confirm"),
    path(route(MANAGE), views.manage, name="manage"),
    path(route(MANAGE, "pause/"), views.pause, name="pause"),
    path(route(MANAGE, "data/"), views.download_data, name="download_data"),
    path(route(MANAGE, "delete/"), views.erase, name="erase"),
    path(route(UNSUBSCRIBE), views.unsubscribe, name="unsubscribe"),
    path(route(UNSUBSCRIBE, "resubscribe/"), views.resubscribe, name="resubscribe"),
]
