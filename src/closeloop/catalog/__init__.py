"""catalog: products (revenue treatment, tax code, standalone selling price), prices per currency and rating.

- ``model.py``  frozen records (:class:`Product`, :class:`Price`, :class:`PriceTerms`, :class:`Tier`) and the
  validation of a price's terms (every problem reported at once);
- ``rating.py`` the pure rating function: price terms x quantity -> integer minor units, rounded once;
- ``store.py``  tables; ``service.py`` the commands ``product.create``, ``product.update``, ``price.create``,
  ``price.deactivate`` and queries ``products``, ``product``, ``prices``, ``price``, ``rate``.

Other areas read the catalogue only through :mod:`closeloop.catalog.service` (``get_product``,
``get_price``, ``find_prices``) and rate with :func:`closeloop.catalog.rating.rate`.
"""
