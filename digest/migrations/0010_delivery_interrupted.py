"""Deliveries failed as interrupted say so in a field of their own (Delivery.interrupted), not only in their error."""

from django.db import migrations, models


def mark_interrupted(apps, schema_editor):
    # Rows failed as interrupted were known only by their error text until this field.
    Delivery = apps.get_model("digest", "Delivery")
    Delivery.objects.filter(status="failed", error__startswith="Interrupted while sending").update(interrupted=True)


class Migration(migrations.Migration):

    dependencies = [
        ('digest', '0009_move_catalogue_to_papers'),
    ]

    operations = [
        migrations.AddField(
            model_name='delivery',
            name='interrupted',
            field=models.BooleanField(default=False, help_text='Failed while the mail server held it: it may have been delivered, so it is never sent again.'),
        ),
        migrations.RunPython(mark_interrupted, migrations.RunPython.noop),
    ]
