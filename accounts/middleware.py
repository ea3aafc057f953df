from django.contrib.auth import logout


class GuestExpiryMiddleware:
    """Ends a guest's session once it has expired (their data waits for clean-up)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and user.guest_expired:
            logout(request)
        return self.get_response(request)
