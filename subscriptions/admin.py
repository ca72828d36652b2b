from django import forms
from django.contrib import admin, messages

from subscriptions.models import Consent, ErasedAddress, Subscriber


class ConsentInline(admin.TabularInline):
    model = Consent
    extra = 0
    can_delete = False
    fields = ["at", "action", "ip", "user_agent", "form_version", "wording", "details"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


class SubscriberForm(forms.ModelForm):
    class Meta:
        model = Subscriber
        fields = [
            "email",
            "status",
            "status_reason",
            "topics",
            "keywords",
            "time_zone",
            "send_hour",
            "frequency",
            "weekly_day",
            "papers_per_email",
        ]

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if self.instance.pk is None and ErasedAddress.is_erased(email):
            raise forms.ValidationError(
                "The owner of this address asked for their data to be erased. Only they can subscribe it again, "
                "by signing up on the site."
            )
        return email


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    form = SubscriberForm
    list_display = ["email", "status", "frequency", "time_zone", "send_hour", "created_at", "confirmed_at"]
    list_filter = ["status", "frequency", "topics"]
    search_fields = ["email"]
    filter_horizontal = ["topics"]
    readonly_fields = ["created_at", "confirmed_at", "unsubscribed_at"]
    inlines = [ConsentInline]
    actions = ["erase_selected"]
    show_full_result_count = False

    def has_delete_permission(self, request, obj=None):
        # Consent records are protected; "Erase personal data" deletes a reader properly, keeping only a hash.
        return False

    @admin.action(description="Erase personal data of the selected subscribers (keeps only a hash of the address)")
    def erase_selected(self, request, queryset):
        count = 0
        for subscriber in queryset:
            subscriber.erase()
            count += 1
        self.message_user(request, f"Erased {count} subscriber{'s' if count != 1 else ''}.", messages.SUCCESS)


@admin.register(ErasedAddress)
class ErasedAddressAdmin(admin.ModelAdmin):
    list_display = ["email_hash", "erased_at"]
    search_fields = ["email_hash"]
    readonly_fields = ["email_hash", "erased_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
