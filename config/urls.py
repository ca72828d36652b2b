from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from digest import admin_views
from subscriptions.tracking import webhook_urls

# Admin pages that belong to no changelist; admin_view lets only logged-in staff in.
preview_prefix = "admin/subscriptions/subscriber/<int:subscriber_id>/preview/"

urlpatterns = [
    path("admin/health/", admin.site.admin_view(admin_views.dashboard), name="digest_dashboard"),
    path(preview_prefix, admin.site.admin_view(admin_views.preview), name="digest_preview"),
    path(preview_prefix + "html/", admin.site.admin_view(admin_views.preview_html), name="digest_preview_html"),
    path(preview_prefix + "send/", admin.site.admin_view(admin_views.preview_send), name="digest_preview_send"),
    # The catalogue's admin pages were under admin/digest/ before it became the papers app; bookmarks still work.
    re_path(
        r"^admin/digest/(?P<rest>(?:paper|topic|fetchrun)/.*)$",
        RedirectView.as_view(url="/admin/papers/%(rest)s", permanent=True, query_string=True),
    ),
    path("admin/", admin.site.urls),
    # Anymail's tracking webhooks (bounces, complaints): anymail/<esp>/tracking/, behind ANYMAIL_WEBHOOK_SECRET.
    path("anymail/", include((webhook_urls(), "anymail"))),
    path("", include("papers.urls")),
    path("", include("digest.urls")),
    path("", include("subscriptions.urls")),
]
