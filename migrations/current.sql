

-- Transactional email: the send_email outbox, its send log, invitation / proposal / invoice
-- emails, and password reset by email.
--!include errors.sql
--!include functions/email.sql
--!include functions/password_reset.sql
--!include functions/auth.sql
