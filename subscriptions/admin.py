from django.contrib import admin

from subscriptions.models import Consent, Subscriber


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = ["at", "action", "ip", "user_agent", "form_version", "wording", "details"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ["email", "status", "frequency", "time_zone", "send_hour", "created_at", "confirmed_at"]
    list_filter = ["status", "frequency", "topics"]
    search_fields = ["email"]
    filter_horizontal = ["topics"]
    readonly_fields = ["created_at", "confirmed_at", "unsubscribed_at"]
    inlines = [ConsentInline]
    show_full_result_count = False
