from django.conf import settings


def site(request):
    return {"site_name": settings.DIGEST_SITE_NAME, "postal_address": settings.DIGEST_POSTAL_ADDRESS}
