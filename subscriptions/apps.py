from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Readers"

    def ready(self):
        # In ready(), as Django requires: these modules import models, which the app registry must have loaded first.
        from django.db.models.signals import post_delete, post_save

        # Connects the receiver of Anymail's tracking webhooks (bounces, complaints, unsubscribes at the provider).
        from subscriptions import tracking  # noqa: F401
        from subscriptions.forms import forget_offered_topics

        # The sign-up form keeps its topics in each process for seconds; a topic saved or deleted here shows at once.
        post_save.connect(forget_offered_topics, sender="papers.Topic", dispatch_uid="forget_offered_topics")
        post_delete.connect(forget_offered_topics, sender="papers.Topic", dispatch_uid="forget_offered_topics")
