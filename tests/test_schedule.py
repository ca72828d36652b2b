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
