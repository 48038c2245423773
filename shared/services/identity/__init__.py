"""The identity provider (OpenID Connect): the use cases behind ``/oauth/*`` and the
``python -m web oidc`` commands. :mod:`.clients` registers applications, :mod:`.keys` signs,
:mod:`.requests` judges an authorization request, :mod:`.authorize` turns one into a code,
:mod:`.tokens` is the token endpoint, :mod:`.access` answers userinfo, introspection and
revocation, :mod:`.apps` lists and removes what each person let applications have, and
:mod:`.logout` ends grants with their sign-ins and tells the applications."""
