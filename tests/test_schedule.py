from django_celery_beat.models import IntervalSchedule, PeriodicTask
from lxml import html as lxml_html

PLAN_DIGESTS = "Plan and send digests"


def test_the_digest_job_is_scheduled_every_15_minutes_after_migrating(db):
    task = PeriodicTask.objects.get(name=PLAN_DIGESTS)
    assert task.task == "digest.tasks.plan_digests"
    assert task.enabled
    assert not task.one_off
    assert (task.interval.every, task.interval.period) == (15, IntervalSchedule.MINUTES)
    assert task.crontab is None and task.clocked is None and task.solar is None


def test_unconfirmed_sign_ups_are_purged_daily_after_migrating(db):
    task = PeriodicTask.objects.get(name="Purge unconfirmed sign-ups")
    assert task.task == "subscriptions.tasks.purge_unconfirmed"
    assert task.enabled and not task.one_off
    schedule = task.crontab
    assert (schedule.minute, schedule.hour, schedule.day_of_week, schedule.day_of_month, schedule.month_of_year) == (
        "15",
        "3",
        "*",
        "*",
        "*",
    )
    assert task.interval is None and task.clocked is None and task.solar is None


def test_operators_find_the_schedule_in_the_admin(admin_client):
    page = lxml_html.fromstring(admin_client.get("/admin/django_celery_beat/periodictask/").content)
    [row] = [row for row in page.iter("tr") if PLAN_DIGESTS in row.text_content()]
    assert row.find_class("field-interval")[0].text_content() == "every 15 minutes"
    assert row.find_class("field-enabled")[0].find("img").get("alt") == "True"

    link = row.find_class("field-name")[0].find("a").get("href")
    form = lxml_html.fromstring(admin_client.get(link).content)
    assert form.get_element_by_id("id_task").get("value") == "digest.tasks.plan_digests"
    # The web process knows the task too, so an operator can pick it from the list of registered tasks.
    assert "digest.tasks.plan_digests" in form.get_element_by_id("id_regtask").value_options


def test_every_stored_schedule_names_a_task_the_workers_know(db):
    """Schedules live in the database, by task name: moving a task's code must not orphan them."""
    from config.celery import app

    app.loader.import_default_modules()
    stored = set(PeriodicTask.objects.exclude(task="celery.backend_cleanup").values_list("task", flat=True))
    assert stored == {
        "digest.tasks.plan_digests",
        "digest.tasks.fetch_papers",
        "subscriptions.tasks.purge_unconfirmed",
    }
    assert stored <= set(app.tasks)


def test_the_catalogues_old_admin_addresses_lead_to_the_new_ones(admin_client, db):
    response = admin_client.get("/admin/digest/paper/?q=speech")
    assert (response.status_code, response["Location"]) == (301, "/admin/papers/paper/?q=speech")
    assert admin_client.get("/admin/digest/topic/3/change/")["Location"] == "/admin/papers/topic/3/change/"
    assert admin_client.get("/admin/digest/delivery/").status_code == 200
