-- The production ERP database of the real estate (run as postgres at build time).
CREATE ROLE erp LOGIN PASSWORD 'erp';
CREATE DATABASE erp OWNER erp;
\connect erp
SET ROLE erp;
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL
);
CREATE TABLE invoices (
    no integer NOT NULL UNIQUE,
    customer_id integer NOT NULL REFERENCES customers (id),
    amount numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers (id, name) VALUES
    (1, 'Alder Bakery'), (2, 'Birch Logistics'), (3, 'Cedar Dental'), (4, 'Dogwood Books'), (5, 'Elm Garage');
-- 20 seed invoices, numbers 1..20, one per hour up to the build time.
INSERT INTO invoices (no, customer_id, amount, created_at)
SELECT n, 1 + (n % 5), round((10 + (n * 37) % 490)::numeric + 0.5, 2), now() - (20 - n) * interval '1 hour'
FROM generate_series(1, 20) AS n;
