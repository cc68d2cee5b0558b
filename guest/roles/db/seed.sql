-- Deterministic seed of the production ERP database (the estate builder replaces the data later).
PRAGMA foreign_keys = ON;
CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE invoices(no INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id), amount_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
INSERT INTO customers(id, name, city) VALUES
  (1, 'Acme Tools', 'Berlin'),
  (2, 'Baltic Shipping', 'Hamburg'),
  (3, 'Cedar & Sons', 'Munich'),
  (4, 'Delta Foods', 'Cologne'),
  (5, 'Elbe Printing', 'Dresden'),
  (6, 'Fjord Outdoor', 'Kiel'),
  (7, 'Granite Works', 'Stuttgart'),
  (8, 'Harbor Logistics', 'Bremen'),
  (9, 'Iris Optics', 'Jena'),
  (10, 'Juniper Bakery', 'Leipzig'),
  (11, 'Kestrel Air', 'Frankfurt'),
  (12, 'Linden Pharma', 'Mainz'),
  (13, 'Meadow Dairy', 'Hanover'),
  (14, 'Nordlicht Energy', 'Rostock'),
  (15, 'Oakridge Furniture', 'Kassel'),
  (16, 'Pine Software', 'Karlsruhe'),
  (17, 'Quarry Stone', 'Bonn'),
  (18, 'Rhine Textiles', 'Duesseldorf'),
  (19, 'Spree Media', 'Potsdam'),
  (20, 'Thistle Garden', 'Freiburg');
-- Invoices 1..100 every 7 hours from 2026-01-02T08:00:00Z (the last one on 2026-01-31T05:00:00Z).
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 100)
INSERT INTO invoices(no, customer_id, amount_cents, created_at)
SELECT n,
       (n * 7) % 20 + 1,
       1500 + (n * 7919) % 248500,
       strftime('%Y-%m-%dT%H:%M:%SZ', '2026-01-02 08:00:00', '+' || ((n - 1) * 7) || ' hours')
FROM seq;
