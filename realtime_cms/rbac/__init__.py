"""Role-based access control: the permission catalog, default roles and `authorize`."""
