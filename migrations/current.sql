-- Enter migration here

-- No secret in a job (issue 11, point 4): the one-time tokens of invitation, password-reset and
-- sign-up emails wait for the worker in app_private.email_secrets instead of the send_email
-- job's payload (sql/functions/email.sql). Sign-up by email (points 6 and 11): register answers
-- the same for every address and emails a confirmation link, or a note to an existing account;
-- confirmRegistration creates the account (sql/functions/registration.sql). app_private.register
-- becomes app_private.create_account, for the demo data and test fixtures only (owner).
--!include errors.sql
--!include functions/email.sql
--!include functions/auth.sql
--!include functions/password_reset.sql
--!include functions/registration.sql

-- Logs carry no secret (point 4): the echo task logs its payload's keys, not their values.
--!include functions/jobs.sql
