"""A reader's topics are papers.Topic now (the same table, digest_topic)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('papers', '0001_initial'),
        ('subscriptions', '0005_send_when_empty'),
    ]

    operations = [
        # The tables stay where they are: only Django's idea of which app owns the models changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='subscriber',
                    name='topics',
                    field=models.ManyToManyField(blank=True, related_name='subscribers', to='papers.topic'),
                ),
            ],
            database_operations=[],
        ),
    ]
