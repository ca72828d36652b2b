"""The most papers per email goes from 30 to 25, so the largest digest stays under 90 KB: readers who chose more,
in their saved choices or in choices waiting for confirmation, get 25."""

import django.core.validators
from django.db import migrations, models


MOST = 25


def at_most_25(apps, schema_editor):
    Subscriber = apps.get_model("subscriptions", "Subscriber")
    Subscriber.objects.filter(papers_per_email__gt=MOST).update(papers_per_email=MOST)
    for reader in Subscriber.objects.exclude(pending_preferences=None).only("id", "pending_preferences").iterator():
        choices = reader.pending_preferences
        if isinstance(choices, dict) and isinstance(choices.get("papers_per_email"), int):
            if choices["papers_per_email"] > MOST:
                choices["papers_per_email"] = MOST
                Subscriber.objects.filter(id=reader.id).update(pending_preferences=choices)


class Migration(migrations.Migration):
    dependencies = [
        ("papers", "0003_topicexample"),
        ("subscriptions", "0010_signupemail"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="subscriber",
            name="subscriber_papers_per_email_valid",
        ),
        migrations.RunPython(at_most_25, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="subscriber",
            name="papers_per_email",
            field=models.PositiveSmallIntegerField(
                default=10,
                validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(25)],
            ),
        ),
        migrations.AddConstraint(
            model_name="subscriber",
            constraint=models.CheckConstraint(
                condition=models.Q(("papers_per_email__gte", 1), ("papers_per_email__lte", 25)),
                name="subscriber_papers_per_email_valid",
            ),
        ),
    ]
