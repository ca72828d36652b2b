"""The purge of unconfirmed sign-ups, scheduled daily at 03:15 UTC with the database so beat (DatabaseScheduler)
finds it; editable in the admin."""

from django.db import migrations

PURGE_UNCONFIRMED = "Purge unconfirmed sign-ups"


def create_schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="15", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    PeriodicTask.objects.get_or_create(
        name=PURGE_UNCONFIRMED,
        defaults={
            "task": "subscriptions.tasks.purge_unconfirmed",
            "crontab": nightly,
            "description": "Deletes sign-ups nobody confirmed within UNCONFIRMED_SIGNUP_DAYS.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PURGE_UNCONFIRMED).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0008_purgerun"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
