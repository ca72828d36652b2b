"""The digest's schedule, created with the database so beat (DatabaseScheduler) finds it; editable in the admin."""

from django.db import migrations

PLAN_DIGESTS = "Plan and send digests"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_15_minutes, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=PLAN_DIGESTS,
        defaults={
            "task": "digest.tasks.plan_digests",
            "interval": every_15_minutes,
            "description": "Finds readers whose local send hour has come and queues their digests.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PLAN_DIGESTS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("digest", "0002_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
