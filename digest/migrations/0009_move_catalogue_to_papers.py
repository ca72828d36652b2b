"""Paper, Topic and FetchRun now belong to the papers app (papers/migrations/0001_initial.py); their tables stay."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('digest', '0008_delivery_shown'),
        ('papers', '0001_initial'),
        ('subscriptions', '0006_topics_in_papers'),
    ]

    operations = [
        # The tables stay where they are: only Django's idea of which app owns the models changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='FetchRun',
                ),
                migrations.AlterField(
                    model_name='feedback',
                    name='paper',
                    field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='feedback', to='papers.paper'),
                ),
                migrations.DeleteModel(
                    name='Topic',
                ),
                migrations.DeleteModel(
                    name='Paper',
                ),
            ],
            database_operations=[],
        ),
    ]
