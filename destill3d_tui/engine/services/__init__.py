"""The services: the layer between the facade (``engine/api.py``) and the stages.

Each service is built by ``Destill3D.__init__`` (or on first use, through a typed property,
when building it is costly) with exactly what it needs: a settings section, the ``Store`` or
the ``StoreService``, the ``Queue``, the ``EventBus``. A service never holds the facade, and no
stage (``acquire``, ``extract``, ``classify``, ``store``) imports a service.

- :mod:`.acquire`: ``AcquireService`` (``d3d.acquire``): platforms, search, licence-gated queueing.
- :mod:`.classify`: ``ClassifyService`` (``d3d.classify``) and ``ModelsService`` (``d3d.models``).
- :mod:`.dataset`: ``DatasetService`` (``d3d.db.find_similar / duplicates / export``).
- :mod:`.review`: ``ReviewService`` (``d3d.review``): curation over ``store/review``, the review
  order's duplicate clusters, teaching a few-shot class from a person's labels.

Nothing is re-exported here: importing the dataset service loads FAISS and numba, which a
``Destill3D`` that only queues files never needs.
"""
