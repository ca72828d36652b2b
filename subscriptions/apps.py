from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Readers"

    def ready(self):
        # Connects the receiver of Anymail's tracking webhooks (bounces, complaints, unsubscribes at the provider).
        from subscriptions import tracking  # noqa: F401
