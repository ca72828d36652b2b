"""The fetchers' schedule, editable in the admin: Hugging Face hourly, arXiv daily after its 20:00 US-Eastern release."""

from django.db import migrations

FETCH_HF = "Fetch Hugging Face daily papers"
FETCH_ARXIV = "Fetch arXiv papers"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    after_announcement, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="20", day_of_week="*", day_of_month="*", month_of_year="*", timezone="America/New_York"
    )
    PeriodicTask.objects.get_or_create(
        name=FETCH_HF,
        defaults={"task": "digest.tasks.fetch_papers", "args": '["hf"]', "interval": hourly},
    )
    PeriodicTask.objects.get_or_create(
        name=FETCH_ARXIV,
        defaults={"task": "digest.tasks.fetch_papers", "args": '["arxiv"]', "crontab": after_announcement},
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[FETCH_HF, FETCH_ARXIV]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("digest", "0004_fetchrun"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
