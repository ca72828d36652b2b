"""Paper, Topic and FetchRun move here from the digest app, keeping their tables (digest_paper, digest_topic,
digest_fetchrun) and every row. Their content types follow them, so admin permissions and history stay attached."""

import django.utils.timezone
from django.db import migrations, models

MOVED = ["paper", "topic", "fetchrun"]


def move_content_types(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    ContentType.objects.filter(app_label="digest", model__in=MOVED).update(app_label="papers")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('digest', '0008_delivery_shown'),
    ]

    operations = [
        migrations.RunPython(move_content_types, migrations.RunPython.noop),
        # The tables stay where they are: only Django's idea of which app owns the models changes.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='FetchRun',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('source', models.CharField(choices=[('hf', 'Hugging Face daily papers'), ('arxiv', 'arXiv API')], max_length=8)),
                        ('started_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('parameters', models.JSONField(blank=True, default=dict, help_text='The day, categories or query fetched.')),
                        ('fetched_count', models.PositiveIntegerField(default=0, verbose_name='fetched')),
                        ('created_count', models.PositiveIntegerField(default=0, verbose_name='created')),
                        ('updated_count', models.PositiveIntegerField(default=0, verbose_name='updated')),
                        ('error_count', models.PositiveIntegerField(default=0, verbose_name='errors')),
                        ('error', models.TextField(blank=True, help_text='Why the fetch failed, or the items it rejected.')),
                    ],
                    options={
                        'db_table': 'digest_fetchrun',
                        'ordering': ['-started_at'],
                    },
                ),
                migrations.CreateModel(
                    name='Topic',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.CharField(max_length=100, unique=True)),
                        ('slug', models.SlugField(max_length=100, unique=True)),
                        ('description', models.CharField(blank=True, help_text='One line shown to readers when they sign up.', max_length=200)),
                        ('aliases', models.TextField(blank=True, help_text='Other names and abbreviations readers and papers use, one per line (e.g. GNN, message passing).')),
                        ('is_active', models.BooleanField(default=True, help_text='Inactive topics are hidden from sign-up.', verbose_name='active')),
                        ('display_order', models.PositiveSmallIntegerField(default=100)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                    ],
                    options={
                        'db_table': 'digest_topic',
                        'ordering': ['display_order', 'name'],
                    },
                ),
                migrations.CreateModel(
                    name='Paper',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('arxiv_id', models.CharField(max_length=32, unique=True, verbose_name='arXiv id')),
                        ('title', models.CharField(help_text='Cleaned for display: whitespace and markup normalised.', max_length=1000)),
                        ('raw_title', models.CharField(help_text='The title exactly as the source gave it.', max_length=1000)),
                        ('abstract', models.TextField(blank=True)),
                        ('authors', models.JSONField(blank=True, default=list)),
                        ('published_at', models.DateTimeField(blank=True, db_index=True, null=True)),
                        ('featured_at', models.DateTimeField(blank=True, help_text='When Hugging Face daily papers listed it, if it did.', null=True)),
                        ('first_seen_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('upvotes', models.PositiveIntegerField(default=0)),
                        ('num_comments', models.PositiveIntegerField(default=0)),
                        ('github_url', models.URLField(blank=True, max_length=500)),
                        ('thumbnail_url', models.URLField(blank=True, max_length=500)),
                        ('keywords', models.JSONField(blank=True, default=list)),
                        ('categories', models.JSONField(blank=True, default=list)),
                        ('primary_category', models.CharField(blank=True, max_length=32)),
                        ('source', models.CharField(choices=[('hf', 'Hugging Face daily papers'), ('arxiv', 'arXiv API'), ('file', 'Imported file')], default='file', max_length=8)),
                        ('search_title', models.TextField(blank=True, editable=False)),
                        ('search_abstract', models.TextField(blank=True, editable=False)),
                    ],
                    options={
                        'db_table': 'digest_paper',
                        'ordering': ['-first_seen_at', 'arxiv_id'],
                        'indexes': [models.Index(fields=['primary_category'], name='paper_primary_category')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
