"""The operator's health dashboard: today's digests, deliverability, readers by status, and daily sends.

Every figure is one aggregate query over an indexed column, so the page stays fast at a million deliveries.

Digests and sign-up emails have separate rates, each its own reports over its own sends: a provider's report is the
sign-up emails' when its message id is a recorded sign-up email's (SignupEmail), and the digests' otherwise. A report
that matches no email recorded here (another sender on the same account, or a sign-up email sent before they were
recorded) is counted with the digests, so an alarm errs on the side of showing, and the page says how many there are.
"""

import dataclasses
from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from digest.models import Delivery, DigestRun
from subscriptions.models import MailEvent, SignupEmail, Subscriber

# Gmail and Yahoo ask bulk senders to stay under 0.1 % spam complaints and never reach 0.3 %.
COMPLAINT_WARNING = 0.001
COMPLAINT_LIMIT = 0.003
# Mailbox providers start distrusting a sender well before this; most ESPs review accounts above 5 %.
BOUNCE_WARNING = 0.02
CHART_DAYS = 30


DIGESTS = "digests"
SIGNUP_EMAILS = "sign-up emails"
# What a bounce rate above BOUNCE_WARNING most likely means, by kind of email.
BOUNCE_ADVICE = {
    DIGESTS: "look for an old or imported list.",
    SIGNUP_EMAILS: "someone may be sending the sign-up form with made-up or other people's addresses.",
}


@dataclasses.dataclass
class Rates:
    days: int
    sent: int
    bounces: int
    complaints: int
    kind: str = DIGESTS
    # Reports counted here that match no email recorded as sent (see the module's docstring).
    unmatched: int = 0

    @property
    def title(self):
        return f"{self.kind.capitalize()}, last {self.days} days"

    @property
    def anchor(self):
        return f"rates-{self.kind.split()[0].lower()}-{self.days}"

    @property
    def bounce_advice(self):
        return BOUNCE_ADVICE[self.kind]

    @property
    def bounce_rate(self):
        return self.bounces / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self):
        return self.complaints / self.sent if self.sent else 0.0

    # A no-break space before the sign: "0.20" and "%" never end up on two lines of a narrow card.
    @property
    def bounce_percent(self):
        return f"{self.bounce_rate * 100:.2f}\N{NO-BREAK SPACE}%"

    @property
    def complaint_percent(self):
        return f"{self.complaint_rate * 100:.3f}\N{NO-BREAK SPACE}%"

    @property
    def complaint_level(self):
        """ "ok", "warning" (at 0.1 %) or "danger" (at Gmail's 0.3 % limit)."""
        if self.complaint_rate >= COMPLAINT_LIMIT:
            return "danger"
        return "warning" if self.complaint_rate >= COMPLAINT_WARNING else "ok"

    @property
    def bounce_level(self):
        return "warning" if self.bounce_rate >= BOUNCE_WARNING else "ok"


def today_runs(now=None):
    """Totals of the digest runs started today (server time), and the latest run."""
    now = now or timezone.now()
    start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    runs = DigestRun.objects.filter(started_at__gte=start)
    totals = runs.aggregate(
        runs=Count("id"),
        planned=Sum("planned_count", default=0),
        sent=Sum("sent_count", default=0),
        failed=Sum("failed_count", default=0),
        skipped=Sum("skipped_count", default=0),
    )
    totals["latest"] = DigestRun.objects.first()
    totals["waiting"] = Delivery.objects.filter(
        status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING], run__started_at__gte=start
    ).count()
    return totals


def rates(days, now=None):
    """[digests' Rates, sign-up emails' Rates] over the last `days` days."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    sent = Delivery.objects.filter(status=Delivery.Status.SENT, finished_at__gte=since).count()
    signup_sent = SignupEmail.objects.filter(sent_at__gte=since).count()
    has_id = ~Q(message_id="")
    events = (
        MailEvent.objects.filter(occurred_at__gte=since)
        .annotate(
            signup=Exists(SignupEmail.objects.filter(message_id=OuterRef("message_id"))),
            digest=Exists(Delivery.objects.filter(message_id=OuterRef("message_id"))),
        )
        .aggregate(
            bounces=Count("id", filter=Q(event_type__in=MailEvent.BOUNCE_TYPES) & ~(has_id & Q(signup=True))),
            complaints=Count("id", filter=Q(event_type=MailEvent.EventType.COMPLAINED) & ~(has_id & Q(signup=True))),
            signup_bounces=Count("id", filter=Q(event_type__in=MailEvent.BOUNCE_TYPES) & has_id & Q(signup=True)),
            signup_complaints=Count(
                "id", filter=Q(event_type=MailEvent.EventType.COMPLAINED) & has_id & Q(signup=True)
            ),
            unmatched=Count(
                "id",
                filter=Q(event_type__in=[*MailEvent.BOUNCE_TYPES, MailEvent.EventType.COMPLAINED])
                & ~(has_id & (Q(signup=True) | Q(digest=True))),
            ),
        )
    )
    return [
        Rates(days, sent, events["bounces"], events["complaints"], DIGESTS, events["unmatched"]),
        Rates(days, signup_sent, events["signup_bounces"], events["signup_complaints"], SIGNUP_EMAILS),
    ]


def readers_by_status():
    counts = dict(Subscriber.objects.values_list("status").annotate(count=Count("id")).order_by())
    return [(label, value, counts.get(value, 0)) for value, label in Subscriber.Status.choices]


def daily_sends(days=CHART_DAYS, now=None):
    """[(date, sent, failed)] for the last `days` digest dates, oldest first, with empty days as zeros."""
    today = timezone.localdate(now or timezone.now())
    first = today - timedelta(days=days - 1)
    rows = (
        Delivery.objects.filter(digest_date__gte=first, status__in=[Delivery.Status.SENT, Delivery.Status.FAILED])
        .values_list("digest_date", "status")
        .annotate(count=Count("id"))
        .order_by()
    )
    counts = {(day, status): count for day, status, count in rows}
    return [
        (day, counts.get((day, Delivery.Status.SENT), 0), counts.get((day, Delivery.Status.FAILED), 0))
        for day in (first + timedelta(days=offset) for offset in range(days))
    ]


def chart_bars(series, *, width=600, height=120):
    """Bars for an inline SVG chart of daily sends: no script, no library, readable without the picture too."""
    top = max((sent + failed for _day, sent, failed in series), default=0) or 1
    step = width / max(len(series), 1)
    bars = []
    for index, (day, sent, failed) in enumerate(series):
        sent_height = round(sent / top * height, 1)
        failed_height = round(failed / top * height, 1)
        bars.append(
            {
                "day": day,
                "sent": sent,
                "failed": failed,
                "x": round(index * step + 1, 1),
                "width": round(max(step - 2, 1), 1),
                "sent_y": round(height - sent_height, 1),
                "sent_height": sent_height,
                "failed_y": round(height - sent_height - failed_height, 1),
                "failed_height": failed_height,
            }
        )
    return {
        "bars": bars,
        "width": width,
        "height": height,
        "top": top,
        "any": any(sent or failed for _d, sent, failed in series),
    }


def get_dashboard(now=None):
    now = now or timezone.now()
    series = daily_sends(now=now)
    return {
        "today": today_runs(now),
        # Digests' 7 and 30 days, then the sign-up emails'.
        "rates": [rate for pair in zip(*(rates(days, now) for days in (7, 30)), strict=True) for rate in pair],
        "readers": readers_by_status(),
        "chart": chart_bars(series),
        "series": series,
        "complaint_warning": COMPLAINT_WARNING,
        "complaint_limit": COMPLAINT_LIMIT,
    }
